package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
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

// markEnv is the variable the tests' escaping apps carry, so that every
// process of theirs is found by its environment, wherever it went.
const markEnv = "DYNAPM_TEST_MARK"

// marked returns the live processes whose environment holds markEnv=mark.
func marked(mark string) []int {
	want := []byte("\x00" + markEnv + "=" + mark + "\x00")
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !testutil.ProcessAlive(pid) {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err == nil && strings.Contains("\x00"+string(env)+"\x00", string(want)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// escaperApp is an echo app whose program double-forks an orphan that
// calls setsid, ignores SIGTERM and keeps the log pipe open, every
// process of it marked with mark.
func escaperApp(t *testing.T, listen, mark, idle string) string {
	t.Helper()
	esc := filepath.Join(t.TempDir(), "escaped.pid")
	return fmt.Sprintf("listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-escape\", %q]\nenv: {%s: %q}\nidle_timeout: %s\nstart_timeout: 20s\nstop_timeout: 1s\n",
		listen, testutil.TestApp(t), esc, markEnv, mark, idle)
}

// waitNoneMarked waits until no process carries mark.
func waitNoneMarked(t *testing.T, mark, what string, d *runningDaemon) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() bool { return len(marked(mark)) == 0 },
		"processes %v of the app left after %s; daemon output:\n%s", marked(mark), what, d.out)
}

// An app that daemonizes a worker out of its session (as PostgreSQL's
// backends and sshd's sessions do) ends whole: after an idle stop, after
// dynapm stop and after SIGKILL of the daemon no process of it is left,
// and the daemon holds no descriptor of it (its log pipe) any more.
func TestAnAppThatEscapesItsSessionEndsWhole(t *testing.T) {
	for _, c := range containments {
		t.Run(c, func(t *testing.T) {
			forceContainment(t, c)
			mark := fmt.Sprintf("escape-%s-%d", c, os.Getpid())
			apps, state := t.TempDir(), stateDir(t)
			idleListen, stopListen := testutil.FreeAddr(t), testutil.FreeAddr(t)
			testutil.WriteFile(t, filepath.Join(apps, "idle.yaml"), escaperApp(t, idleListen, mark+"-idle", "300ms"))
			testutil.WriteFile(t, filepath.Join(apps, "manual.yaml"), escaperApp(t, stopListen, mark+"-manual", "1h"))
			d := startDaemon(t, apps, "-state", state)
			requireContainment(t, d, c)
			pid := d.cmd.Process.Pid
			// Twice each: the first opens what stays open (each app's log
			// file); after the second, no descriptor may be left over.
			fds := 0
			for round := range 2 {
				// Idle stop.
				if got := testutil.EchoOnce(t, idleListen, "a"); got != "a" {
					t.Fatalf("echo = %q", got)
				}
				if n := len(marked(mark + "-idle")); n < 2 {
					t.Fatalf("%d processes of the app, want the program and its orphan", n)
				}
				waitNoneMarked(t, mark+"-idle", "an idle stop", d)

				// dynapm stop.
				if got := testutil.EchoOnce(t, stopListen, "b"); got != "b" {
					t.Fatalf("echo = %q", got)
				}
				if code, out, errOut := dynapm(t, "stop", "manual", "-state", state); code != 0 {
					t.Fatalf("dynapm stop: %d %s %s", code, out, errOut)
				}
				waitNoneMarked(t, mark+"-manual", "dynapm stop", d)
				if round == 0 {
					// The last output drains meanwhile: wait until it settles.
					testutil.Eventually(t, 10*time.Second, func() bool {
						n := fdCount(t, pid)
						settled := n == fds
						fds = n
						return settled
					}, "descriptors never settled")
					continue
				}
				testutil.Eventually(t, 10*time.Second, func() bool { return fdCount(t, pid) <= fds },
					"daemon holds %d descriptors after a second wake and stop of each app, %d after the first: %s", fdCount(t, pid), fds, fdList(pid))
			}

			// SIGKILL of the daemon.
			if got := testutil.EchoOnce(t, stopListen, "c"); got != "c" {
				t.Fatalf("echo = %q", got)
			}
			if err := d.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-d.done
			if c == "cgroup" {
				// The reaper killed the cgroup.
				waitNoneMarked(t, mark+"-manual", "SIGKILL of the daemon", d)
			}
			// Without cgroups an orphan out of its session outlives the
			// daemon's process group reaper, and the next daemon stops it
			// by its record; with cgroups, the next daemon removes the
			// dead one's empty cgroups.
			next := startDaemon(t, apps, "-state", state)
			waitNoneMarked(t, mark+"-manual", "SIGKILL of the daemon and a restart", next)
		})
	}
}

// SIGKILL of the daemon at any instant of a wake (before, during or after
// the program's start) leaves nothing running once the next daemon on the
// same state has started, and that daemon starts clean and serves. With
// cgroups, a program is born in its cgroup; without, it is recorded with
// its invocation id before it starts.
func TestDaemonKilledAtRandomInstantsOfWakesLeavesNothing(t *testing.T) {
	for _, c := range containments {
		t.Run(c, func(t *testing.T) { daemonKilledAtRandomInstants(t, c) })
	}
}

func daemonKilledAtRandomInstants(t *testing.T, c string) {
	forceContainment(t, c)
	mark := fmt.Sprintf("random-kill-%s-%d", c, os.Getpid())
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), escaperApp(t, listen, mark, "1h"))
	const rounds = 20
	for i := range rounds {
		d := startDaemon(t, apps, "-state", state)
		requireContainment(t, d, c)
		// What the last daemon left was stopped before this one was ready.
		if left := marked(mark); len(left) > 0 {
			t.Fatalf("round %d: processes %v of the app survive a SIGKILLed daemon and a restart:\n%s", i, left, d.out)
		}
		conn, err := net.DialTimeout("tcp", listen, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// A random instant within the start: the wake is under way when
		// the client is accepted; the program takes milliseconds.
		time.Sleep(time.Duration(rand.IntN(30_000)) * time.Microsecond)
		if err := d.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-d.done
		conn.Close()
	}
	last := startDaemon(t, apps, "-state", state)
	waitNoneMarked(t, mark, "the last SIGKILL and a restart", last)
	if got := testutil.EchoOnce(t, listen, "ok"); got != "ok" {
		t.Fatalf("echo after %d kills = %q", rounds, got)
	}
}
