package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/driver/exec/spawner"
	"github.com/dynapm/dynapm/internal/testutil"
	"go.uber.org/goleak"
)

// dynapmBin is the daemon binary built once for this package's tests.
var dynapmBin string

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == spawner.HelperArg {
		// The spawner helper of a daemon run in this process.
		os.Exit(spawner.Main())
	}
	dir, err := os.MkdirTemp("", "dynapm-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dynapmBin = filepath.Join(dir, "dynapm")
	out, err := exec.Command("go", "build", "-race", "-o", dynapmBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building dynapm: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// The daemons run as processes, but the admin server of the client
	// tests, the CLI's clients and the tests' own echo and wait
	// goroutines run here: none may outlive its test. The one exception
	// is lumberjack's per-log goroutine, which it never ends (one per app
	// log, by design: see applog), started by the tests that run a daemon
	// in this process (apply_order_test.go).
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runningDaemon is a dynapm daemon started by a test.
type runningDaemon struct {
	cmd     *exec.Cmd
	out     *testutil.Buffer
	done    chan struct{}
	appsDir string
}

// startDaemon runs the dynapm binary on appsDir and waits until it is ready.
func startDaemon(t *testing.T, appsDir string, extra ...string) *runningDaemon {
	t.Helper()
	state := t.TempDir()
	args := append([]string{"run", "-apps", appsDir, "-state", state}, extra...)
	d := &runningDaemon{cmd: exec.Command(dynapmBin, args...), out: &testutil.Buffer{}, done: make(chan struct{}), appsDir: appsDir}
	d.cmd.Stdout = d.out
	d.cmd.Stderr = d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("daemon output:\n%s", d.out.String())
		}
	})
	testutil.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(d.out.String(), "dynapm ready")
	}, "daemon did not log \"dynapm ready\"; output:\n%s", d.out)
	return d
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// echoOnce connects to addr, sends msg, half-closes and returns the reply.
func echoOnce(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading reply from %s: %v", addr, err)
	}
	return string(reply)
}

func echoApp(t *testing.T, listen, pidfile, extra string) string {
	bin := testutil.TestApp(t)
	return fmt.Sprintf("listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-pidfile\", %q%s]\nidle_timeout: 300ms\nstart_timeout: 20s\nstop_timeout: 2s\n",
		listen, bin, pidfile, extra)
}

func TestDaemonWakesServesAndStopsWhenIdle(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	writeFile(t, filepath.Join(apps, "echo.yaml"), echoApp(t, listen, pidfile, ""))
	d := startDaemon(t, apps)

	if got := echoOnce(t, listen, "hello through dynapm"); got != "hello through dynapm" {
		t.Fatalf("echo reply = %q", got)
	}
	pid := testutil.ReadPidFile(t, pidfile)
	testutil.Eventually(t, 20*time.Second, func() bool { return !testutil.ProcessAlive(pid) },
		"app pid %d still running after its idle timeout", pid)
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(d.out.String(), "idle") },
		"no idle stop logged")
	if err := os.Remove(pidfile); err != nil {
		t.Fatal(err)
	}
	if got := echoOnce(t, listen, "again"); got != "again" {
		t.Fatalf("echo reply after idle stop = %q", got)
	}
	if pid2 := testutil.ReadPidFile(t, pidfile); pid2 == pid {
		t.Fatalf("second wake reused pid %d", pid)
	}
}

func TestDaemonServesGoodAppsDespiteABadFile(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	writeFile(t, filepath.Join(apps, "good.yaml"), echoApp(t, listen, filepath.Join(t.TempDir(), "pid"), ""))
	writeFile(t, filepath.Join(apps, "bad.yaml"), "listen: \"127.0.0.1:1\"\ncommand: [\"true\"]\nidle_timeout: soon\n")
	d := startDaemon(t, apps)
	if got := echoOnce(t, listen, "ok"); got != "ok" {
		t.Fatalf("good app reply = %q", got)
	}
	out := d.out.String()
	if !strings.Contains(out, "bad.yaml") || !strings.Contains(out, "idle_timeout") {
		t.Fatalf("daemon log does not name the bad file and field:\n%s", out)
	}
}

// startAppWithGrandchild runs a daemon with one echo app that forks a
// grandchild ignoring SIGTERM, wakes it, and returns both pids.
func startAppWithGrandchild(t *testing.T) (d *runningDaemon, pid, gpid int) {
	t.Helper()
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	grand := filepath.Join(t.TempDir(), "grandchild")
	writeFile(t, filepath.Join(apps, "echo.yaml"), echoApp(t, listen, pidfile, fmt.Sprintf(", \"-grandchild\", %q", grand)))
	d = startDaemon(t, apps)
	echoOnce(t, listen, "x")
	pid = testutil.ReadPidFile(t, pidfile)
	gpid = testutil.ReadPidFile(t, grand)
	return d, pid, gpid
}

func TestDaemonSIGTERMStopsAppsAndExitsZero(t *testing.T) {
	d, pid, gpid := startAppWithGrandchild(t)

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	for _, p := range []int{pid, gpid} {
		if testutil.ProcessAlive(p) {
			t.Errorf("process %d outlived the daemon", p)
		}
	}
}

func TestDaemonSIGKILLLeavesNoAppProcess(t *testing.T) {
	d, pid, gpid := startAppWithGrandchild(t)

	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
	testutil.Eventually(t, 10*time.Second, func() bool {
		return !testutil.ProcessAlive(pid) && !testutil.ProcessAlive(gpid)
	}, "app %d or grandchild %d outlived a SIGKILLed daemon", pid, gpid)
}

func TestPersistentAppStartsWithTheDaemon(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	writeFile(t, filepath.Join(apps, "db.yaml"), echoApp(t, listen, pidfile, "")+"mode: persistent\n")
	startDaemon(t, apps)
	pid := testutil.ReadPidFile(t, pidfile)
	if !testutil.ProcessAlive(pid) {
		t.Fatalf("persistent app %d not running", pid)
	}
}

func TestCheckReportsEveryProblemAndExitsOne(t *testing.T) {
	apps := t.TempDir()
	writeFile(t, filepath.Join(apps, "good.yaml"), "listen: \"127.0.0.1:9001\"\ncommand: [\"true\"]\n")
	writeFile(t, filepath.Join(apps, "typo.yaml"), "listen: \"127.0.0.1:9002\"\ncommand: [\"true\"]\nidel_timeout: 5m\n")
	writeFile(t, filepath.Join(apps, "nolisten.json"), `{"command": "true"}`)
	var stdout, stderr bytes.Buffer
	code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("check exit code = %d, want 1; output:\n%s%s", code, &stdout, &stderr)
	}
	out := stdout.String()
	for _, want := range []string{"typo.yaml", "idel_timeout", "nolisten.json", "listen"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "good.yaml") {
		t.Errorf("check output blames good.yaml:\n%s", out)
	}

	os.Remove(filepath.Join(apps, "typo.yaml"))
	os.Remove(filepath.Join(apps, "nolisten.json"))
	stdout.Reset()
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 0 {
		t.Fatalf("check on valid files exit code = %d; output:\n%s", code, &stdout)
	}
}

// The example app files are valid as shipped. They are checked in a copy
// with the modes a root daemon accepts, so that the test is about their
// content and not about the umask the repository was checked out with.
func TestExampleAppsAreValid(t *testing.T) {
	root := t.TempDir()
	apps := filepath.Join(root, "apps.d")
	if err := os.Mkdir(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("apps.d")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("apps.d", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(apps, e.Name()), string(data)) // 0644
	}
	if len(entries) == 0 {
		t.Fatal("no example app files in apps.d")
	}
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 0 {
		t.Fatalf("the example apps.d does not pass check:\n%s%s", &stdout, &stderr)
	}
}

func TestDaemonServesAHerdOfFirstConnectionsWithOneSpawn(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	// A backlog of 5, as some servers have: releasing every held
	// connection at once must not end in SYN retransmits.
	writeFile(t, filepath.Join(apps, "herd.yaml"),
		echoApp(t, listen, pidfile, ", \"-backlog\", \"5\", \"-delay\", \"200ms\"")+"max_pending: 500\n")
	d := startDaemon(t, apps)

	const clients = 200
	replies := make(chan string, clients)
	for i := 0; i < clients; i++ {
		go func() {
			c, err := net.DialTimeout("tcp", listen, 10*time.Second)
			if err != nil {
				replies <- err.Error()
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			msg := fmt.Sprintf("client %d", i)
			if _, err := io.WriteString(c, msg); err != nil {
				replies <- err.Error()
				return
			}
			_ = c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				replies <- err.Error()
				return
			}
			if string(got) != msg {
				replies <- fmt.Sprintf("client %d got %q", i, got)
				return
			}
			replies <- ""
		}()
	}
	for i := 0; i < clients; i++ {
		if r := <-replies; r != "" {
			t.Errorf("client failed: %s", r)
		}
	}
	if n := strings.Count(d.out.String(), "app started"); n != 1 {
		t.Fatalf("%d starts logged for %d simultaneous first connections, want 1", n, clients)
	}
}
