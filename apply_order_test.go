package main

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/settings"
)

// newInProcessDaemon wires a daemon in the test process, without the
// watcher: the test calls its apply itself. It is shut down at cleanup.
// edit, when given, changes the settings first.
func newInProcessDaemon(t *testing.T, edit ...func(*settings.Settings)) (*daemon, *testutil.Buffer) {
	t.Helper()
	state := t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	s := settings.Settings{StateDir: state}
	for _, e := range edit {
		e(&s)
	}
	d := newDaemon(s, slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() {
		if err := d.shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs)
		}
	})
	return d, logs
}

// loadSpec writes an app file and parses it as the watcher would.
func loadSpec(t *testing.T, dir, name, content string) *appfile.Spec {
	t.Helper()
	path := filepath.Join(dir, name)
	testutil.WriteFile(t, path, content)
	s, err := appfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sendEarly connects to addr, sends msg, half-closes, and returns a channel
// that gets the reply (or the error) once the connection ends.
func sendEarly(t *testing.T, addr, msg string) <-chan string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s right after it was bound: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply := make(chan string, 1)
	go func() {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			reply <- err.Error()
			return
		}
		reply <- string(b)
	}()
	return reply
}

func TestHotAddServesAConnectionMadeBeforeTheManagerKnowsTheApp(t *testing.T) {
	d, logs := newInProcessDaemon(t)
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	spec := loadSpec(t, apps, "late.yaml", testutil.EchoApp(t, listen, filepath.Join(t.TempDir(), "pid"), ""))

	var reply <-chan string
	d.bound = func() {
		// The new address is bound; the manager has not heard of the app.
		reply = sendEarly(t, listen, "first in the door")
	}
	if errs := d.apply([]*appfile.Spec{spec}); errs != nil {
		t.Fatalf("apply: %v", errs)
	}
	if reply == nil {
		t.Fatal("apply never reached the point where the address is bound")
	}
	select {
	case got := <-reply:
		if got != "first in the door" {
			t.Fatalf("connection made right after the bind got %q, want the echo", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("connection made right after the bind was never served")
	}
	if l := logs.String(); strings.Contains(l, "connection closed unserved") {
		t.Errorf("a connection reached the manager before it knew the app:\n%s", l)
	}
}

func TestRespelledListenAddressMovesToTheNewSpelling(t *testing.T) {
	d, _ := newInProcessDaemon(t)
	apps := t.TempDir()
	port := testutil.FreePort(t)
	pid := filepath.Join(t.TempDir(), "pid")
	old := loadSpec(t, apps, "web.yaml", testutil.EchoApp(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), pid, ""))
	if errs := d.apply([]*appfile.Spec{old}); errs != nil {
		t.Fatalf("apply: %v", errs)
	}
	respelled := loadSpec(t, apps, "web.yaml", testutil.EchoApp(t, net.JoinHostPort("localhost", strconv.Itoa(port)), pid, ""))
	if errs := d.apply([]*appfile.Spec{respelled}); errs != nil {
		t.Fatalf("apply of the same address spelled localhost: %v", errs)
	}
	if got := testutil.EchoOnce(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "respelled"); got != "respelled" {
		t.Fatalf("echo through the respelled address = %q", got)
	}
	if d.srv.Addr(net.JoinHostPort("127.0.0.1", strconv.Itoa(port))) != nil {
		t.Error("the old spelling is still listening")
	}
}

// From spawnerFrom listen addresses on, programs are started by the
// spawner helper (their parent), and below it by the daemon again; the
// app is served either way.
func TestManyAppsAreStartedThroughTheSpawnerHelper(t *testing.T) {
	d, logs := newInProcessDaemon(t)
	d.spawnerFrom = 2
	apps := t.TempDir()
	var specs []*appfile.Spec
	var addrs, pidfiles []string
	for _, name := range []string{"a", "b"} {
		addr, pidfile := testutil.FreeAddr(t), filepath.Join(t.TempDir(), "pid")
		// Up until the test looks at its parent.
		app := strings.Replace(testutil.EchoApp(t, addr, pidfile, ""), "idle_timeout: 300ms", "idle_timeout: 1h", 1)
		specs = append(specs, loadSpec(t, apps, name+".yaml", app))
		addrs, pidfiles = append(addrs, addr), append(pidfiles, pidfile)
	}
	parentOf := func(pidfile string) int {
		pid := testutil.ReadPidFile(t, pidfile)
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		ppid, _ := strconv.Atoi(f[1])
		return ppid
	}
	if errs := d.apply(specs); errs != nil {
		t.Fatalf("apply: %v", errs)
	}
	if got := testutil.EchoOnce(t, addrs[0], "via the helper"); got != "via the helper" {
		t.Fatalf("echo = %q", got)
	}
	if d.spawner == nil {
		t.Fatalf("no spawner helper with %d apps; log:\n%s", len(specs), logs)
	}
	if ppid := parentOf(pidfiles[0]); ppid != d.spawner.Pid() {
		t.Errorf("the program's parent is %d, want the spawner helper %d", ppid, d.spawner.Pid())
	}
	// One app left: below the threshold, the daemon forks again.
	if errs := d.apply(specs[1:]); errs != nil {
		t.Fatalf("apply: %v", errs)
	}
	if got := testutil.EchoOnce(t, addrs[1], "from the daemon"); got != "from the daemon" {
		t.Fatalf("echo = %q", got)
	}
	if ppid := parentOf(pidfiles[1]); ppid != os.Getpid() {
		t.Errorf("the program's parent is %d, want the daemon %d", ppid, os.Getpid())
	}
}
