package cmddriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/managertest"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait on the Manager: generous for a loaded machine.
const wait = 20 * time.Second

// env is a Manager whose command driver runs real shell commands around
// the testapp program, which listens on addr and writes its pid to pidfile.
type env struct {
	*managertest.Harness
	dir     string
	app     string
	addr    string
	pidfile string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	h := managertest.New(t, wait, func(logger *slog.Logger) map[string]lifecycle.Driver {
		return map[string]lifecycle.Driver{appfile.DriverCommand: New(Config{Logger: logger, CheckInterval: 50 * time.Millisecond, StopPollInterval: 10 * time.Millisecond})}
	})
	dir := t.TempDir()
	return &env{Harness: h, dir: dir, app: testutil.TestApp(t), addr: testutil.FreeAddr(t), pidfile: filepath.Join(dir, "app.pid")}
}

// checkCmd exits 0 while the pid in the pid file is a live process (not a
// zombie: an orphan may wait a while for its reaper).
const checkCmd = `pid=$(cat app.pid 2>/dev/null) && grep -q '^State:[[:space:]]*[^ZX]' /proc/$pid/status`

// startCmd launches testapp in the background and returns at once.
func (e *env) startCmd() string {
	return fmt.Sprintf("touch started; rm -f app.pid; %s -mode echo -listen %s -pidfile app.pid &", e.app, e.addr)
}

// spec parses an app file of driver: command with the given extra YAML.
func (e *env) spec(extra string) *appfile.Spec {
	e.T.Helper()
	yaml := fmt.Sprintf("listen: '127.0.0.1:1'\ndriver: command\nupstream: '%s'\nstop: 'kill $(cat app.pid)'\n%s", e.addr, extra)
	s, err := appfile.Parse(filepath.Join(e.dir, "app.yaml"), []byte(yaml))
	if err != nil {
		e.T.Fatalf("parsing app file: %v\n%s", err, yaml)
	}
	return s
}

// echo sends msg through a connection to up and returns the answer.
func echo(t *testing.T, up netip.AddrPort, msg string) string {
	t.Helper()
	return testutil.EchoLine(t, up.String(), msg, wait)
}

func (e *env) exists(name string) bool {
	_, err := os.Stat(filepath.Join(e.dir, name))
	return err == nil
}

func TestCommandWakeRunsStartAndIdleRunsStop(t *testing.T) {
	e := newEnv(t)
	e.M.Apply([]*appfile.Spec{e.spec(fmt.Sprintf("start: '%s'\ncheck: \"%s\"\nidle_timeout: 300ms\n", e.startCmd(), checkCmd))})
	up, release := e.Wake()
	if got := echo(t, up, "hello"); got != "hello" {
		t.Fatalf("echo = %q", got)
	}
	pid := testutil.ReadPidFile(t, e.pidfile)
	if !testutil.ProcessAlive(pid) {
		t.Fatalf("testapp %d not running after the wake", pid)
	}
	release()
	e.WaitState(lifecycle.Stopped)
	testutil.Eventually(t, wait, func() bool { return !testutil.ProcessAlive(pid) }, "testapp %d still runs after the idle stop", pid)
	if !strings.Contains(e.Logs.String(), "reason=idle") {
		t.Errorf("no idle stop in the log:\n%s", e.Logs)
	}
}

func TestCommandStoppedOutsideIsNoticedByCheck(t *testing.T) {
	e := newEnv(t)
	e.M.Apply([]*appfile.Spec{e.spec(fmt.Sprintf("start: '%s'\ncheck: \"%s\"\n", e.startCmd(), checkCmd))})
	up, release := e.Wake()
	release()
	pid := testutil.ReadPidFile(t, e.pidfile)
	// Someone else stops it (pm2 stop, systemctl stop...).
	if err := exec.Command("kill", fmt.Sprint(pid)).Run(); err != nil {
		t.Fatal(err)
	}
	st := e.WaitState(lifecycle.Stopped)
	if st.LastError != "" {
		t.Errorf("LastError = %q, want none: an outside stop is not a crash", st.LastError)
	}
	if !strings.Contains(e.Logs.String(), `app stopped from outside" app=app status="check command reports it not running`) {
		t.Errorf("no outside stop naming the app in the log:\n%s", e.Logs)
	}
	// The next connection starts it again, without a crash backoff.
	up2, _ := e.Wake()
	if got := echo(t, up2, "again"); got != "again" || up2 != up {
		t.Fatalf("echo = %q via %v (first %v)", got, up2, up)
	}
	if pid2 := testutil.ReadPidFile(t, e.pidfile); pid2 == pid {
		t.Errorf("same pid %d after the restart", pid)
	}
}

func TestCommandCheckAdoptsRunningApp(t *testing.T) {
	e := newEnv(t)
	// The app runs before DynaPM learns of it.
	cmd := exec.Command(e.app, "-mode", "echo", "-listen", e.addr, "-pidfile", e.pidfile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	testutil.ReadPidFile(t, e.pidfile)

	e.M.Apply([]*appfile.Spec{e.spec(fmt.Sprintf("start: '%s'\ncheck: \"%s\"\n", e.startCmd(), checkCmd))})
	e.WaitState(lifecycle.Ready)
	if !strings.Contains(e.Logs.String(), "reason=adopt") {
		t.Errorf("no adoption in the log:\n%s", e.Logs)
	}
	up, release := e.Wake()
	if got := echo(t, up, "adopted"); got != "adopted" {
		t.Fatalf("echo = %q", got)
	}
	release()
	if e.exists("started") {
		t.Error("start ran for an app that check reported running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.M.Stop(ctx, "app", "manual"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(wait):
		t.Fatal("the adopted app still runs after Stop")
	}
}

func TestCommandWithoutCheckIsNotAdopted(t *testing.T) {
	e := newEnv(t)
	e.M.Apply([]*appfile.Spec{e.spec(fmt.Sprintf("start: '%s'\n", e.startCmd()))})
	if st := e.Status(); st.State != lifecycle.Stopped {
		t.Fatalf("state %s before any wake", st.State)
	}
	up, release := e.Wake()
	if got := echo(t, up, "x"); got != "x" || !e.exists("started") {
		t.Fatalf("echo = %q, started %v", got, e.exists("started"))
	}
	release()
	pid := testutil.ReadPidFile(t, e.pidfile)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.M.Stop(ctx, "app", "manual"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, func() bool { return !testutil.ProcessAlive(pid) }, "testapp %d still runs after Stop", pid)
}

func TestCommandStartFailureReportsExitStatus(t *testing.T) {
	e := newEnv(t)
	e.M.Apply([]*appfile.Spec{e.spec("start: 'echo cannot; exit 3'\n")})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := e.M.Start(ctx, "app", "manual")
	if !errors.Is(err, lifecycle.ErrStartFailed) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("Start = %v, want ErrStartFailed with exit status 3", err)
	}
}

func TestCommandStartThatDoesNotReturnIsKilled(t *testing.T) {
	e := newEnv(t)
	// Foreground: start never returns.
	start := fmt.Sprintf("%s -mode echo -listen %s -pidfile app.pid", e.app, e.addr)
	e.M.Apply([]*appfile.Spec{e.spec(fmt.Sprintf("start: '%s'\nstart_timeout: 1s\n", start))})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// The caller's wait and the start command share start_timeout: either
	// may end first.
	err := e.M.Start(ctx, "app", "manual")
	if !errors.Is(err, lifecycle.ErrStartFailed) && !errors.Is(err, lifecycle.ErrStartTimeout) {
		t.Fatalf("Start = %v, want a failed or timed out start", err)
	}
	if st := e.WaitState(lifecycle.Failed); !strings.Contains(st.LastError, "did not return") {
		t.Errorf("LastError = %q, want it to say that start did not return", st.LastError)
	}
	pid := testutil.ReadPidFile(t, e.pidfile)
	testutil.Eventually(t, wait, func() bool { return !testutil.ProcessAlive(pid) }, "testapp %d outlived its killed start", pid)
}

// The caller (the Manager's adoption) names the app; the driver names the
// check.
func TestRunningWithCheckThatCannotRunNamesTheCheck(t *testing.T) {
	d := New(Config{})
	spec := &appfile.Spec{Name: "a", Dir: t.TempDir(), CheckCommand: []string{filepath.Join(t.TempDir(), "no-such-check")}}
	running, err := d.Running(context.Background(), spec)
	if running || err == nil || !strings.HasPrefix(err.Error(), "check command: ") || strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("Running = %v, %v; want false and an error naming the check, not the app", running, err)
	}
}

func TestRunningWithoutCheckIsFalse(t *testing.T) {
	d := New(Config{})
	running, err := d.Running(context.Background(), &appfile.Spec{Name: "a"})
	if running || err != nil {
		t.Fatalf("Running = %v, %v; want false, nil", running, err)
	}
}
