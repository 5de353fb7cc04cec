package execdriver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/driver/exec/forkwatch"
)

// floodUID is a user nothing else on the machine runs as: a flood of
// kill(-1) from it reaches only the test's own processes.
const floodUID = 54321

// uidBusy reports whether a process of uid runs.
func uidBusy(t *testing.T, uid int) bool {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip(err)
	}
	want := "Uid:\t" + strconv.Itoa(uid) + "\t"
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err == nil && strings.Contains(string(b), want) {
			return true
		}
	}
	return false
}

// asFloodUser runs script as floodUID, in a process group of its own.
func asFloodUser(script string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: floodUID, Gid: floodUID}}
	return cmd
}

// The user a handed-off program runs as may signal it between its fork
// and its exec, where the forking thread waits for it (vfork) and, for a
// traced start, is also the tracer it stops for. Flooded with SIGSTOP,
// SIGCONT and SIGWINCH from that user, every start still returns: with
// the program's own pid in LISTEN_PID, or failed as stopped before its
// exec; and the daemon starts programs afterwards.
func TestStartsFinishUnderSignalsFromTheAppsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run programs as another user")
	}
	if uidBusy(t, floodUID) {
		t.Skipf("uid %d is in use on this machine: flooding it would signal others", floodUID)
	}
	d := newExecTestDriver(t)
	sock, _ := listenSocket(t)
	dir := t.TempDir()
	cred := &syscall.Credential{Uid: floodUID, Gid: floodUID}
	flood := asFloodUser(`i=0; while [ $i -lt 300000 ]; do kill -s STOP -1; kill -s CONT -1; kill -s WINCH -1; i=$((i+1)); done 2>/dev/null`)
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = flood.Process.Kill()
		_ = flood.Wait()
	}()
	// On a hang, what is stuck is a child of floodUID: killing every
	// process of that user frees the daemon's lock for the cleanup.
	unstick := func() { _ = asFloodUser("kill -s KILL -1").Run() }
	const starts = 150
	var ok, stalled int
	for i := range starts {
		log, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := &exec.Cmd{
			Path:        "/bin/sh",
			Args:        []string{"sh", "-c", `echo "$LISTEN_PID $$"`},
			Dir:         "/",
			Env:         []string{},
			Stdout:      log,
			Stderr:      log,
			ExtraFiles:  []*os.File{sock},
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: cred},
		}
		type result struct {
			pid  int
			wait func() error
			err  error
		}
		done := make(chan result, 1)
		go func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			pid, wait, err := d.launchLocked(cmd, true)
			done <- result{pid, wait, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(20 * forkwatch.Bound):
			unstick()
			<-done
			log.Close()
			t.Fatalf("start %d still running after %v", i, 20*forkwatch.Bound)
		}
		log.Close()
		if r.err != nil {
			if !errors.Is(r.err, forkwatch.ErrStalled) {
				t.Fatalf("start %d: %v", i, r.err)
			}
			stalled++
			continue
		}
		waitErr := make(chan error, 1)
		go func() { waitErr <- r.wait() }()
		select {
		case err := <-waitErr:
			if err != nil {
				t.Errorf("program %d: %v", i, err)
				continue
			}
		case <-time.After(execWaitLimit):
			unstick()
			<-waitErr
			t.Fatalf("program %d did not end", i)
		}
		b, _ := os.ReadFile(log.Name())
		if want := fmt.Sprintf("%d %d\n", r.pid, r.pid); string(b) != want {
			t.Errorf("program %d printed %q, want %q", i, b, want)
		}
		ok++
	}
	d.mu.Lock()
	shell := d.shellStarts
	d.mu.Unlock()
	t.Logf("%d starts: %d ran (%d through the shell), %d stopped before their exec and killed", starts, ok, shell, stalled)
	if flood.ProcessState != nil || syscall.Kill(flood.Process.Pid, 0) != nil {
		t.Errorf("the flood ended before the starts: it proved nothing")
	}
	if ok == 0 {
		t.Errorf("no start succeeded")
	}
}
