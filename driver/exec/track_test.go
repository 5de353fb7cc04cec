package execdriver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// startGroup starts a sleeping testapp through d.StartGroup and kills its
// group at the end of the test.
func startGroup(t *testing.T, d *Driver, app, program string) (pgid int, untrack func()) {
	t.Helper()
	cmd := exec.Command(testutil.TestApp(t), "-mode", "sleep")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	untrack, err := d.StartGroup(cmd, &appfile.Spec{Name: app}, program)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd.Process.Pid, untrack
}

func TestStartedGroupIsRecordedUntilUntracked(t *testing.T) {
	d := newExecTestDriver(t)
	if d.Containment() == ContainCgroup {
		t.Skip("with cgroups, no record is written")
	}
	run := filepath.Join(t.TempDir(), "run")
	if err := d.RecordGroups(run); err != nil {
		t.Fatal(err)
	}
	pgid, untrack := startGroup(t, d, "nightly", "/bin/backup")
	d.mu.Lock()
	id := d.tracked[pgid].box.id
	d.mu.Unlock()
	rec, err := readRecord(recordPath(run, id))
	if err != nil {
		t.Fatalf("no record of started group %d in %s: %v", pgid, run, err)
	}
	if rec.App != "nightly" || rec.Program != "/bin/backup" || rec.Pgid != pgid ||
		rec.StopTimeout != trackedStopTimeout || !rec.stillOurs() {
		t.Fatalf("record = %+v (still ours: %v)", rec, rec.stillOurs())
	}
	untrack()
	if _, err := os.Stat(recordPath(run, id)); !os.IsNotExist(err) {
		t.Fatalf("record of an untracked group still there: %v", err)
	}
	untrack() // a second call changes nothing
}

func TestReaperKillsStartedGroupsButNotUntrackedOnes(t *testing.T) {
	d := newExecTestDriver(t)
	if d.Containment() == ContainCgroup {
		t.Skip("with cgroups, untrack kills what is left in the job's cgroup")
	}
	kept, _ := startGroup(t, d, "a", "sleep")
	dropped, untrack := startGroup(t, d, "b", "sleep")
	untrack()
	// No app was ever started: StartGroup must have started the reaper
	// before the group's first process ran.
	d.mu.Lock()
	r := d.reaper
	d.mu.Unlock()
	if r == nil {
		t.Fatal("StartGroup did not start the reaper")
	}
	// EOF on the reaper's stdin, as when the daemon dies.
	r.w.Close()
	testutil.Eventually(t, execWaitLimit, func() bool { return !testutil.ProcessAlive(kept) },
		"started group %d survived the reaper", kept)
	if !testutil.ProcessAlive(dropped) {
		t.Fatalf("untracked group %d was killed", dropped)
	}
}

func TestStartGroupRefusesACommandWithoutAGroupOfItsOwn(t *testing.T) {
	d := newExecTestDriver(t)
	cmd := exec.Command(testutil.TestApp(t), "-mode", "sleep")
	if _, err := d.StartGroup(cmd, &appfile.Spec{Name: "a"}, "sleep"); err == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("StartGroup started a command that shares the daemon's process group")
	}
	if cmd.Process != nil {
		t.Fatal("StartGroup started the command although it refused it")
	}
}

func TestStartGroupAfterCloseStartsNothing(t *testing.T) {
	d := newExecTestDriver(t)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testutil.TestApp(t), "-mode", "sleep")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if _, err := d.StartGroup(cmd, &appfile.Spec{Name: "a"}, "sleep"); err == nil || cmd.Process != nil {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		t.Fatalf("StartGroup after Close: err %v, started %v", err, cmd.Process != nil)
	}
}

// A group StartGroup starts (a scheduled job) runs as its app's program
// would: the app's user and group, and its umask.
func TestStartGroupRunsAsTheAppsUserWithItsUmask(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching user needs root")
	}
	// The other user must be able to run the program in its directory.
	dir, err := os.MkdirTemp("", "guard")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := os.ReadFile(testutil.TestApp(t))
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "testapp")
	if err := os.WriteFile(prog, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := newExecTestDriver(t)
	cmd := exec.Command(prog, "-mode", "sleep")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	spec := &appfile.Spec{Name: "nightly", User: "65534", Group: "65533", Umask: "027"}
	untrack, err := d.StartGroup(cmd, spec, prog)
	if err != nil {
		t.Fatal(err)
	}
	defer untrack()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	// The umask goes through a /bin/sh wrapper that execs the program:
	// read the status once the program runs in the wrapper's place.
	var status string
	testutil.Eventually(t, execWaitLimit, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		status = string(b)
		return err == nil && strings.Contains(status, "Name:\ttestapp")
	}, "the job's program never ran")
	for _, want := range []string{"Uid:\t65534\t65534", "Gid:\t65533\t65533", "Umask:\t0027"} {
		if !strings.Contains(status, want) {
			t.Errorf("job process status lacks %q:\n%s", want, status)
		}
	}
}
