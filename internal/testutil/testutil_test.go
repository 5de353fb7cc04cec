package testutil

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestFreePortIsListenable(t *testing.T) {
	addr := FreeAddr(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on free address %s: %v", addr, err)
	}
	ln.Close()
}

// fatalRecorder records a Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = "failed: " + format
}

func TestEventuallyFailsAfterDeadline(t *testing.T) {
	r := &fatalRecorder{TB: t}
	Eventually(r, 20*time.Millisecond, func() bool { return false }, "never")
	if !strings.Contains(r.msg, "never") {
		t.Fatalf("Eventually did not fail with the message, got %q", r.msg)
	}
	r = &fatalRecorder{TB: t}
	n := 0
	Eventually(r, 5*time.Second, func() bool { n++; return n == 3 }, "counting")
	if r.msg != "" || n != 3 {
		t.Fatalf("Eventually: msg %q after %d polls, want success at 3", r.msg, n)
	}
}

func TestProcessAliveSeesZombies(t *testing.T) {
	if !ProcessAlive(os.Getpid()) {
		t.Fatal("own process not alive")
	}
	pidfile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(TestApp(t), "-mode", "sleep", "-pidfile", pidfile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if got := ReadPidFile(t, pidfile); got != pid {
		t.Fatalf("pid file: %d, want %d", got, pid)
	}
	if !ProcessAlive(pid) {
		t.Fatal("started process not alive")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Not yet reaped: a zombie, which must count as dead.
	Eventually(t, 10*time.Second, func() bool { return !ProcessAlive(pid) }, "zombie %d still alive", pid)
	if state, err := processState(pid); err != nil || state != 'Z' {
		t.Fatalf("state of unreaped child: %c, %v; want Z", state, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("testapp on SIGTERM: %v, want exit 0", err)
	}
	if ProcessAlive(pid) {
		t.Fatal("reaped process alive")
	}
}

// startApp starts the test app with args and env, stopping it at cleanup.
func startApp(t *testing.T, env []string, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(TestApp(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, &out
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	var conn net.Conn
	Eventually(t, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		conn = c
		return err == nil
	}, "testapp never listened on %s", addr)
	return conn
}

func TestAppEchoHalfClose(t *testing.T) {
	port := FreePort(t)
	startApp(t, []string{"PORT=" + strconv.Itoa(port)}, "-mode", "echo", "-backlog", "5")
	conn := dial(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	defer conn.Close()
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo: %q, %v; want hello then EOF", got, err)
	}
}

func TestAppHTTPReadyDelayAndGreeting(t *testing.T) {
	addr := FreeAddr(t)
	startApp(t, []string{"GREETING=hi"}, "-mode", "http", "-listen", addr, "-ready-delay", "300ms")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var sawUnready bool
	Eventually(t, 10*time.Second, func() bool {
		code, _ := get("/healthz")
		sawUnready = sawUnready || code == http.StatusServiceUnavailable
		return code == http.StatusOK
	}, "/healthz never answered 200")
	if !sawUnready {
		t.Error("/healthz never answered 503 during -ready-delay")
	}
	if code, body := get("/any"); code != 200 || body != "ok hi" {
		t.Fatalf("GET /any: %d %q, want 200 \"ok hi\"", code, body)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestAppCrash(t *testing.T) {
	cmd := exec.Command(TestApp(t), "-crash", "-print-env", "MARK")
	cmd.Env = append(os.Environ(), "MARK=xyz")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errAs(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit: %v, want exit status 3", err)
	}
	if !strings.Contains(string(out), "testapp: crashing on purpose") || !strings.Contains(string(out), "MARK=xyz") {
		t.Fatalf("output %q lacks the crash line or MARK=xyz", out)
	}
}

func errAs(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

func TestAppPidfileAndGrandchild(t *testing.T) {
	dir := t.TempDir()
	pidfile, gcfile := filepath.Join(dir, "pid"), filepath.Join(dir, "gc")
	cmd, _ := startApp(t, nil, "-mode", "hold", "-listen", FreeAddr(t), "-pidfile", pidfile, "-grandchild", gcfile, "-ignore-term")
	if pid := ReadPidFile(t, pidfile); pid != cmd.Process.Pid {
		t.Fatalf("pid file: %d, want %d", pid, cmd.Process.Pid)
	}
	gc := ReadPidFile(t, gcfile)
	t.Cleanup(func() { _ = syscall.Kill(gc, syscall.SIGKILL) })
	if !ProcessAlive(gc) {
		t.Fatal("grandchild not alive")
	}
	// Both ignore SIGTERM.
	_ = syscall.Kill(gc, syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	// The grandchild must show SIGTERM in its ignored mask, and both survive.
	Eventually(t, 10*time.Second, func() bool { return sigIgnored(t, gc, syscall.SIGTERM) }, "grandchild does not ignore SIGTERM")
	if !ProcessAlive(gc) || !ProcessAlive(cmd.Process.Pid) {
		t.Fatal("SIGTERM ended a process that should ignore it")
	}
}

// sigIgnored reads the SigIgn mask of pid.
func sigIgnored(t *testing.T, pid int, sig syscall.Signal) bool {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}
