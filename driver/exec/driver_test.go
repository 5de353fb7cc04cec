package execdriver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/exectest"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
	"golang.org/x/sys/unix"
)

// execWaitLimit is a generous bound for things that take milliseconds.
const execWaitLimit = 10 * time.Second

// newExecTestDriver returns a driver that logs to the test's output, with
// the spawner helper when the suite runs with one, closed when the test
// ends.
func newExecTestDriver(t *testing.T) *Driver {
	t.Helper()
	d := New(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	exectest.Setup(t, d)
	return d
}

// execRequest is a start request for the test app with args, run in its own
// temporary directory with the test's environment, logging to dir/app.log.
func execRequest(t *testing.T, args ...string) (lifecycle.StartRequest, string) {
	t.Helper()
	dir := t.TempDir()
	log, err := os.Create(filepath.Join(dir, "app.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return lifecycle.StartRequest{
		Spec: &appfile.Spec{
			Name:    "t",
			Command: append([]string{testutil.TestApp(t)}, args...),
			Dir:     dir,
		},
		Env: os.Environ(),
		Log: log,
	}, dir
}

func execStart(t *testing.T, d *Driver, req lifecycle.StartRequest) lifecycle.Process {
	t.Helper()
	p, err := d.Start(context.Background(), req)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return p
}

func waitExecDone(t *testing.T, p lifecycle.Process) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(execWaitLimit):
		t.Fatalf("process %d not done after %v", p.Pid(), execWaitLimit)
	}
}

func execStop(t *testing.T, p lifecycle.Process, timeout time.Duration) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- p.Stop(syscall.SIGTERM, timeout) }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
	case <-time.After(timeout + execWaitLimit):
		t.Fatalf("Stop(%v) has not returned after %v", timeout, timeout+execWaitLimit)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before Done was closed")
	}
}

func readAppLog(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "app.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// execKilledBy reports whether err is the exit of a process killed by sig.
// exitError is what *exec.ExitError and *spawner.ExitError (the exit of a
// program the spawner helper started) have in common.
type exitError interface {
	ExitCode() int
	Sys() any
}

func execKilledBy(err error, sig syscall.Signal) bool {
	var ee exitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

func execExitCode(err error) int {
	var ee exitError
	if !errors.As(err, &ee) {
		return -1
	}
	return ee.ExitCode()
}

func execEchoRoundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	var conn net.Conn
	testutil.Eventually(t, execWaitLimit, func() bool {
		c, err := net.Dial("tcp", addr)
		conn = c
		return err == nil
	}, "app never listened on %s", addr)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(execWaitLimit))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExecStartFindsProgramInEnvPathAndRunsInDir(t *testing.T) {
	d := newExecTestDriver(t)
	req, dir := execRequest(t, "-mode", "echo", "-pidfile", "app.pid", "-print-env", "GREETING")
	bin := req.Spec.Command[0]
	port := testutil.FreePort(t)
	req.Spec.Command[0] = filepath.Base(bin)
	req.Env = []string{"PATH=" + filepath.Dir(bin), "PORT=" + strconv.Itoa(port), "GREETING=hello"}
	p := execStart(t, d, req)

	// The relative pid file lands in Dir, and names the leader.
	if pid := testutil.ReadPidFile(t, filepath.Join(dir, "app.pid")); pid != p.Pid() {
		t.Fatalf("pid file says %d, Pid() %d", pid, p.Pid())
	}
	if got := execEchoRoundTrip(t, "127.0.0.1:"+strconv.Itoa(port), "ping"); got != "ping" {
		t.Fatalf("echo: %q", got)
	}
	if log := readAppLog(t, dir); !strings.Contains(log, "GREETING=hello") {
		t.Fatalf("log lacks the environment value: %q", log)
	}
	if pgid, err := syscall.Getpgid(p.Pid()); err != nil || pgid != p.Pid() {
		t.Fatalf("pgid %d, %v: want own group %d", pgid, err, p.Pid())
	}
	execStop(t, p, execWaitLimit)
}

func TestExecStartResolvesDotSlashAgainstDir(t *testing.T) {
	d := newExecTestDriver(t)
	req, dir := execRequest(t, "-mode", "sleep", "-pidfile", "app.pid")
	if err := os.Symlink(req.Spec.Command[0], filepath.Join(dir, "app")); err != nil {
		t.Fatal(err)
	}
	req.Spec.Command[0] = "./app"
	req.Env = nil // no PATH at all: ./app must not need one
	p := execStart(t, d, req)
	if pid := testutil.ReadPidFile(t, filepath.Join(dir, "app.pid")); pid != p.Pid() {
		t.Fatalf("pid file says %d, Pid() %d", pid, p.Pid())
	}
	execStop(t, p, execWaitLimit)
}

func TestExecStartMissingProgramIsClearError(t *testing.T) {
	d := newExecTestDriver(t)
	for _, name := range []string{"no-such-program-dynapm", "./no-such-program"} {
		req, _ := execRequest(t)
		req.Spec.Command = []string{name}
		_, err := d.Start(context.Background(), req)
		if err == nil {
			t.Fatalf("Start(%q) succeeded", name)
		}
		// The caller names the app; the driver names the program and
		// where it looked.
		if want := `program "` + name; !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), `app "t"`) {
			t.Errorf("Start(%q): error %q should start %q and leave the app to the caller", name, err, want)
		}
	}
	req, _ := execRequest(t)
	req.Spec.Command = []string{"no-such-program-dynapm"}
	if _, err := d.Start(context.Background(), req); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("missing program: %v, want exec.ErrNotFound", err)
	}
	req.Spec.Command = nil
	if _, err := d.Start(context.Background(), req); err == nil {
		t.Error("empty command started")
	}
}

func TestExecStopWithSIGTERMExitsCleanly(t *testing.T) {
	d := newExecTestDriver(t)
	req, dir := execRequest(t, "-mode", "echo", "-listen", testutil.FreeAddr(t), "-pidfile", "app.pid")
	p := execStart(t, d, req)
	testutil.ReadPidFile(t, filepath.Join(dir, "app.pid")) // SIGTERM handler installed
	execStop(t, p, execWaitLimit)
	if err := p.Err(); err != nil {
		t.Fatalf("Err after SIGTERM: %v, want a clean exit", err)
	}
	if testutil.ProcessAlive(p.Pid()) {
		t.Fatal("process alive after Stop")
	}
}

func TestExecStopKillsIgnoreTermAfterTimeout(t *testing.T) {
	d := newExecTestDriver(t)
	req, dir := execRequest(t, "-mode", "hold", "-listen", testutil.FreeAddr(t), "-pidfile", "app.pid", "-ignore-term")
	p := execStart(t, d, req)
	testutil.ReadPidFile(t, filepath.Join(dir, "app.pid"))
	execStop(t, p, 200*time.Millisecond)
	if err := p.Err(); !execKilledBy(err, syscall.SIGKILL) {
		t.Fatalf("Err: %v, want killed by SIGKILL", err)
	}
	if testutil.ProcessAlive(p.Pid()) {
		t.Fatal("process alive after Stop")
	}
}

func TestExecStopKillsGrandchildThatIgnoresTerm(t *testing.T) {
	d := newExecTestDriver(t)
	req, dir := execRequest(t, "-mode", "echo", "-listen", testutil.FreeAddr(t), "-pidfile", "app.pid", "-grandchild", "gc.pid")
	p := execStart(t, d, req)
	testutil.ReadPidFile(t, filepath.Join(dir, "app.pid"))
	gc := testutil.ReadPidFile(t, filepath.Join(dir, "gc.pid"))
	t.Cleanup(func() { syscall.Kill(gc, syscall.SIGKILL) })
	execStop(t, p, 300*time.Millisecond)
	// Stop returns only once the whole group is gone: no waiting here.
	if testutil.ProcessAlive(gc) {
		t.Fatalf("grandchild %d alive after Stop", gc)
	}
	// The leader itself exited on SIGTERM, cleanly.
	if err := p.Err(); err != nil {
		t.Fatalf("leader Err: %v, want a clean exit", err)
	}
}

func TestExecLeaderCrashKillsGrandchild(t *testing.T) {
	d := newExecTestDriver(t)
	// The grandchild is forked (and its pid file written) before the crash.
	req, dir := execRequest(t, "-grandchild", "gc.pid", "-crash")
	p := execStart(t, d, req)
	gc := testutil.ReadPidFile(t, filepath.Join(dir, "gc.pid"))
	t.Cleanup(func() { syscall.Kill(gc, syscall.SIGKILL) })
	waitExecDone(t, p)
	if code := execExitCode(p.Err()); code != 3 {
		t.Fatalf("Err: %v, want exit status 3", p.Err())
	}
	if testutil.ProcessAlive(gc) {
		t.Fatalf("grandchild %d alive after the leader crashed", gc)
	}
	if log := readAppLog(t, dir); !strings.Contains(log, "testapp: crashing on purpose") {
		t.Fatalf("log lacks the crash line: %q", log)
	}
}

func TestExecHoldOutputDoesNotBlockDone(t *testing.T) {
	d := newExecTestDriver(t)
	// A background child keeps the log open; the leader crashes.
	req, _ := execRequest(t, "-hold-output", "-crash")
	p := execStart(t, d, req)
	waitExecDone(t, p)
	if code := execExitCode(p.Err()); code != 3 {
		t.Fatalf("Err: %v, want exit status 3", p.Err())
	}
	if groupAlive(p.Pid()) {
		t.Fatal("output holder alive after Done")
	}
}

func TestExecHoldOutputDoesNotBlockStop(t *testing.T) {
	d := newExecTestDriver(t)
	req, dir := execRequest(t, "-hold-output", "-mode", "hold", "-listen", testutil.FreeAddr(t), "-pidfile", "app.pid")
	p := execStart(t, d, req)
	testutil.ReadPidFile(t, filepath.Join(dir, "app.pid"))
	execStop(t, p, execWaitLimit)
	if groupAlive(p.Pid()) {
		t.Fatal("group alive after Stop")
	}
}

func TestExecStopIsIdempotentAndConcurrent(t *testing.T) {
	d := newExecTestDriver(t)
	req, dir := execRequest(t, "-mode", "sleep", "-pidfile", "app.pid", "-ignore-term")
	p := execStart(t, d, req)
	testutil.ReadPidFile(t, filepath.Join(dir, "app.pid"))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Stop(syscall.SIGTERM, 100*time.Millisecond); err != nil {
				t.Errorf("Stop: %v", err)
			}
		}()
	}
	wg.Wait()
	waitExecDone(t, p)
	// After exit: returns at once and changes nothing.
	if err := p.Stop(syscall.SIGTERM, time.Hour); err != nil {
		t.Fatalf("Stop after exit: %v", err)
	}
	if !execKilledBy(p.Err(), syscall.SIGKILL) {
		t.Fatalf("Err: %v, want killed by SIGKILL", p.Err())
	}
}

func TestExecErrIsNilBeforeDone(t *testing.T) {
	d := newExecTestDriver(t)
	req, _ := execRequest(t, "-mode", "sleep")
	p := execStart(t, d, req)
	if err := p.Err(); err != nil {
		t.Fatalf("Err while running: %v", err)
	}
	execStop(t, p, 0)
}

func TestExecStartAfterCloseFails(t *testing.T) {
	d := newExecTestDriver(t)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ := execRequest(t, "-mode", "sleep")
	if _, err := d.Start(context.Background(), req); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Start after Close: %v, want a driver closed error", err)
	}
}

func TestExecCloseKillsRunningGroups(t *testing.T) {
	d := newExecTestDriver(t)
	req, dir := execRequest(t, "-mode", "sleep", "-pidfile", "app.pid", "-ignore-term", "-grandchild", "gc.pid")
	p := execStart(t, d, req)
	testutil.ReadPidFile(t, filepath.Join(dir, "app.pid"))
	gc := testutil.ReadPidFile(t, filepath.Join(dir, "gc.pid"))
	t.Cleanup(func() { syscall.Kill(gc, syscall.SIGKILL) })
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waits for the process watchers: all is gone when it returns.
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if testutil.ProcessAlive(p.Pid()) || testutil.ProcessAlive(gc) {
		t.Fatal("app or grandchild alive after Close")
	}
}

// TestExecDaemonKilledLeavesNoProcess re-executes this test binary as a daemon
// that starts an app with a grandchild, SIGKILLs that daemon, and expects
// the reaper to take the app, the grandchild and itself away.
func TestExecDaemonKilledLeavesNoProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), daemonDirEnv+"="+dir, daemonAppEnv+"="+testutil.TestApp(t))
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the daemon's pids: %v (got %q)", err, line)
	}
	var pids []int
	for _, f := range strings.Fields(strings.TrimPrefix(line, "PIDS ")) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("daemon line %q: %v", line, err)
		}
		pids = append(pids, pid)
	}
	if len(pids) < 3 {
		t.Fatalf("daemon line %q: want app, grandchild and reaper pids (and the escaped orphan's)", line)
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	for _, pid := range pids {
		if !testutil.ProcessAlive(pid) {
			t.Fatalf("pid %d (of %v) not alive before the daemon is killed", pid, pids)
		}
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, execWaitLimit, func() bool {
		for _, pid := range pids {
			if testutil.ProcessAlive(pid) {
				return false
			}
		}
		return true
	}, "app, grandchild, reaper or orphan (%v) survived the daemon's SIGKILL", pids)
	if os.Getenv(exectest.ContainEnv) == exectest.Cgroup {
		if err := exectest.RemoveSubtree(standInSubtree(cmd.Process.Pid)); err != nil {
			t.Error(err)
		}
	}
}

// startEscaper starts the test app with an orphan that left its session
// and process group (setsid and a double fork, as a daemonizing server's
// worker) and returns the process and the orphan's pid.
func startEscaper(t *testing.T, d *Driver) (lifecycle.Process, int) {
	t.Helper()
	d.mu.Lock()
	contained := d.sub != nil || d.sigchld != nil
	d.mu.Unlock()
	if !contained {
		t.Skip("process groups alone do not hold an orphan that left the session")
	}
	dir := t.TempDir()
	req, _ := execRequest(t, "-mode", "hold", "-listen", "127.0.0.1:0", "-escape", filepath.Join(dir, "escaped.pid"))
	p := execStart(t, d, req)
	orphan := testutil.ReadPidFile(t, filepath.Join(dir, "escaped.pid"))
	t.Cleanup(func() { _ = syscall.Kill(orphan, syscall.SIGKILL) })
	if pgid, _ := syscall.Getpgid(orphan); pgid == p.Pid() {
		t.Fatalf("orphan %d is still in the app's process group", orphan)
	}
	return p, orphan
}

func TestExecStopKillsAnOrphanThatLeftTheSession(t *testing.T) {
	d := newExecTestDriver(t)
	p, orphan := startEscaper(t, d)
	execStop(t, p, 100*time.Millisecond)
	if testutil.ProcessAlive(orphan) {
		t.Fatalf("orphan %d outlived its app's stop (containment %s)", orphan, d.Containment())
	}
}

func TestExecLeaderExitKillsAnOrphanThatLeftTheSession(t *testing.T) {
	d := newExecTestDriver(t)
	p, orphan := startEscaper(t, d)
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExecDone(t, p)
	if testutil.ProcessAlive(orphan) {
		t.Fatalf("orphan %d outlived its app's leader (containment %s)", orphan, d.Containment())
	}
}

// The reaping of orphans scans /proc only for a child that ended: not for
// one that stopped or continued, as at every freeze and thaw. (This
// child only: other tests' orphans may be waiting to be reaped.)
func TestZombieSeesAnEndedChildOnly(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGCONT} {
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		stopped := sig == syscall.SIGSTOP
		testutil.Eventually(t, 5*time.Second, func() bool { return (testutil.ProcState(pid) == 'T') == stopped },
			"pid %d not stopped=%v after %v", pid, stopped, sig)
		if zombie(unix.P_PID, pid) {
			t.Fatalf("zombie after %v of a live child", sig)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return testutil.ProcState(pid) == 'Z' },
		"pid %d not a zombie after SIGKILL", pid)
	if !zombie(unix.P_PID, pid) {
		t.Fatal("zombie missed a child that ended")
	}
	if testutil.ProcState(pid) != 'Z' {
		t.Fatal("zombie reaped the child")
	}
}

// cldTrapped is CLD_TRAPPED, a traced child's stop.
const cldTrapped = 4

// A traced child stopped at its exec is reported by waitid even without
// WSTOPPED: that stop is not an end.
func TestZombieIsNotATracedChildsStop(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", ":")
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true, Setpgid: true}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	testutil.Eventually(t, 5*time.Second, func() bool { return testutil.ProcState(pid) == 't' },
		"pid %d not stopped at its exec", pid)
	var si unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &si, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT|unix.WALL, nil); err != nil || si.Code != cldTrapped {
		t.Fatalf("waitid: %v, code %d, want the stop reported (CLD_TRAPPED)", err, si.Code)
	}
	if zombie(unix.P_PID, pid) {
		t.Fatal("a traced child's stop taken for its end")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return testutil.ProcState(pid) == 'Z' },
		"pid %d not a zombie after SIGKILL", pid)
	if !zombie(unix.P_PID, pid) {
		t.Fatal("zombie missed a traced child that ended")
	}
}

// An orphan that came back to the daemon (its subreaper) is reaped once it
// ends.
func TestExecReapsAnOrphanThatEnded(t *testing.T) {
	d := newExecTestDriver(t)
	d.mu.Lock()
	subreaper := d.sigchld != nil
	d.mu.Unlock()
	if !subreaper {
		t.Skip("orphans come back to the daemon under process-group containment only")
	}
	p, orphan := startEscaper(t, d)
	defer execStop(t, p, 100*time.Millisecond)
	if err := syscall.Kill(orphan, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Reaped: not even a zombie left.
	testutil.Eventually(t, 5*time.Second, func() bool { return testutil.ProcState(orphan) == 0 },
		"orphan %d not reaped", orphan)
}
