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

// startLimit bounds a start under the flood: up to three watched forks
// (the spawner's, the daemon's traced one, the shell's) of
// forkwatch.Bound each, with room for a loaded machine.
const startLimit = 10 * time.Second

// floodEnv makes the test binary the flood: count rounds of SIGSTOP,
// SIGCONT and SIGWINCH to every process its user may signal, or SIGKILL
// once for "kill" (runFlood).
const floodEnv = "DYNAPM_TEST_FLOOD"

// runFlood signals, as fast as a loop of system calls goes, which a
// shell's is not.
func runFlood(rounds string) int {
	if rounds == "kill" {
		_ = syscall.Kill(-1, syscall.SIGKILL)
		return 0
	}
	n, _ := strconv.Atoi(rounds)
	for range n {
		for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGCONT, syscall.SIGWINCH} {
			_ = syscall.Kill(-1, sig)
		}
	}
	return 0
}

// asFloodUser runs args as floodUID, in a process group of its own.
func asFloodUser(args ...string) *exec.Cmd {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: floodUID, Gid: floodUID}}
	return cmd
}

// floodBinary is a copy of the test binary that floodUID may run (go
// test's directory is root's alone).
func floodBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "dynapm-flood")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "flood")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
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
	bin := floodBinary(t)
	flood := asFloodUser(bin)
	flood.Env = []string{floodEnv + "=20000000", "GORACE=atexit_sleep_ms=0"}
	flood.SysProcAttr.Pdeathsig = syscall.SIGKILL // should the test die
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = flood.Process.Kill()
		_ = flood.Wait()
	}()
	floodPid := flood.Process.Pid
	// On a hang, what is stuck is a child of floodUID: killing every
	// process of that user frees the daemon's lock for the cleanup.
	// The flood goes first: it would stop this fork too.
	unstick := func() {
		_ = flood.Process.Kill()
		killer := asFloodUser(bin)
		killer.Env = []string{floodEnv + "=kill", "GORACE=atexit_sleep_ms=0"}
		_ = killer.Run()
	}
	const starts = 30
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
			pid, wait, err := d.launchLocked("flooded", cmd, true)
			done <- result{pid, wait, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(startLimit):
			unstick()
			<-done
			log.Close()
			t.Fatalf("start %d still running after %v", i, startLimit)
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
	if syscall.Kill(floodPid, 0) != nil {
		t.Errorf("the flood ended before the starts: it proved nothing")
	}
	if ok == 0 {
		t.Errorf("no start succeeded")
	}
}
