package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// containments are the ways the daemon holds an app's processes, as its
// ready line names them; forceContainment makes the daemons a test starts
// use one.
var containments = []string{"cgroup", "process-group"}

func forceContainment(t *testing.T, c string) {
	t.Helper()
	t.Setenv("DYNAPM_CONTAINMENT", c)
}

// requireContainment skips a cgroup test where the daemon fell back.
func requireContainment(t *testing.T, d *runningDaemon, c string) {
	t.Helper()
	if !strings.Contains(d.out.String(), "containment="+c) {
		if c == "cgroup" {
			t.Skipf("no usable cgroup v2 here (needs a writable cgroup2 mount, e.g. as root):\n%s", d.out)
		}
		t.Fatalf("daemon not contained by %s:\n%s", c, d.out)
	}
}

// statFields returns the fields of /proc/PID/stat after the command.
func statFields(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
}

// A record in STATE/run is a file: whoever could write one could name any
// process, with the start time and boot id /proc shows everyone. The
// daemon never signals a process because a file says so.
func TestForgedRunRecordNeverKillsAnUnrelatedProcess(t *testing.T) {
	for _, c := range containments {
		t.Run(c, func(t *testing.T) {
			forceContainment(t, c)
			unrelated := startUnrelated(t)
			ticks := statFields(t, unrelated)[19]
			boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
			if err != nil {
				t.Fatal(err)
			}
			state := stateDir(t)
			run := filepath.Join(state, "run")
			if err := os.MkdirAll(run, 0o700); err != nil {
				t.Fatal(err)
			}
			rec := fmt.Sprintf(`{"app":"web","pgid":%d,"program":"/bin/web","start_ticks":%s,"boot_id":%q,"invocation":"%032x","stop_signal":9,"stop_timeout":0}`,
				unrelated, ticks, strings.TrimSpace(string(boot)), 1)
			testutil.WriteFile(t, filepath.Join(run, strconv.Itoa(unrelated)+".json"), rec)
			if err := os.Chmod(filepath.Join(run, strconv.Itoa(unrelated)+".json"), 0o600); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, t.TempDir(), "-state", state)
			requireContainment(t, d, c)
			if !testutil.ProcessAlive(unrelated) {
				t.Fatalf("the daemon killed process %d because a forged record named it:\n%s", unrelated, d.out)
			}
			if strings.Contains(d.out.String(), "still running from a previous daemon") {
				t.Fatalf("the daemon took a forged record for an app of its own:\n%s", d.out)
			}
		})
	}
}

// startUnrelated starts a process that is no app's, in a process group of
// its own, killed when the test ends.
func startUnrelated(t *testing.T) int {
	t.Helper()
	pidfile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(testutil.TestApp(t), "-mode", "sleep", "-pidfile", pidfile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("unrelated process %d not reaped", cmd.Process.Pid)
		}
	})
	return testutil.ReadPidFile(t, pidfile)
}
