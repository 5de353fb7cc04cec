package execdriver

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

// startSleepingGroup starts the test app sleeping in a process group of its own and
// returns its pid (= pgid) once it runs.
func startSleepingGroup(t *testing.T) int {
	t.Helper()
	pidfile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(testutil.TestApp(t), "-mode", "sleep", "-pidfile", pidfile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	testutil.ReadPidFile(t, pidfile)
	return cmd.Process.Pid
}

func TestReaperKillsRegisteredGroupsOnEOF(t *testing.T) {
	a, b, c := startSleepingGroup(t), startSleepingGroup(t), startSleepingGroup(t)
	r, err := startReaper("")
	if err != nil {
		t.Fatal(err)
	}
	// b is registered twice and unregistered once: it must be forgotten.
	// A malformed line is ignored. (Pgids 0 and 1 are refused too, but a
	// test of that would take the machine down if it failed.)
	lines := []struct {
		op   byte
		pgid int
	}{{'+', a}, {'+', b}, {'+', c}, {'+', b}, {'-', b}}
	for _, l := range lines {
		if err := r.send(l.op, strconv.Itoa(l.pgid)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.w.Write([]byte("+abc\n-\n\n")); err != nil {
		t.Fatal(err)
	}
	// The reaper ignores TERM: a stray signal to it must change nothing.
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r.w.Close()
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("reaper exit: %v", err)
	}
	// SIGKILL is delivered asynchronously: the reaper may exit first.
	testutil.Eventually(t, execWaitLimit, func() bool {
		return !testutil.ProcessAlive(a) && !testutil.ProcessAlive(c)
	}, "registered groups %d, %d survived the reaper", a, c)
	if !testutil.ProcessAlive(b) {
		t.Fatalf("unregistered group %d was killed", b)
	}
}

func TestReaperRestartsAndReregisters(t *testing.T) {
	d := newExecTestDriver(t)
	d.reaperMinLife = 0
	req, dir := execRequest(t, "-mode", "sleep", "-pidfile", "app.pid", "-ignore-term")
	p := execStart(t, d, req)
	testutil.ReadPidFile(t, filepath.Join(dir, "app.pid"))

	d.mu.Lock()
	first := d.reaper
	d.mu.Unlock()
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var second *reaper
	testutil.Eventually(t, execWaitLimit, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		second = d.reaper
		return second != nil && second != first
	}, "reaper not restarted")

	// EOF to the new reaper, as if the daemon died: the app, registered with
	// the first reaper only, must be killed by the second.
	second.w.Close()
	waitExecDone(t, p)
	if !execKilledBy(p.Err(), syscall.SIGKILL) {
		t.Fatalf("Err: %v, want killed by SIGKILL", p.Err())
	}
}
