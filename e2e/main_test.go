package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
	"go.uber.org/goleak"
)

// dynapmPackage is the import path of the daemon's main package.
const dynapmPackage = "github.com/dynapm/dynapm"

// dynapmBin is the daemon binary built once for this package's tests.
var dynapmBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dynapm-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dynapmBin = filepath.Join(dir, "dynapm")
	// A -race binary sleeps a second at exit by default; every client
	// command and daemon the tests run would pay it.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	out, err := exec.Command("go", "build", "-race", "-o", dynapmBin, dynapmPackage).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building dynapm: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// The daemons and the client commands run as processes, but the
	// tests' own clients and their echo and wait goroutines run here:
	// none may outlive its test.
	if code == 0 {
		if err := goleak.Find(); err != nil {
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

// waitLog waits until the daemon's log holds a line with every one of parts.
func (d *runningDaemon) waitLog(t *testing.T, parts ...string) {
	t.Helper()
	testutil.Eventually(t, reloadWait, func() bool {
		for line := range strings.Lines(d.out.String()) {
			if containsAll(line, parts...) {
				return true
			}
		}
		return false
	}, "no daemon log line with %q", parts)
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// stateDir is a private state directory with a path short enough for the
// admin socket (sun_path is 108 bytes).
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// dynapm runs the binary to completion and returns its exit code and output.
func dynapm(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(dynapmBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), stdout.String(), stderr.String()
	default:
		t.Fatalf("running dynapm %v: %v", args, err)
		return 0, "", ""
	}
}

// statusOf returns the app's object from `dynapm status -json`.
func statusOf(t *testing.T, state, app string) map[string]any {
	t.Helper()
	code, out, errOut := dynapm(t, "status", "-json", "-state", state)
	if code != 0 {
		t.Fatalf("status -json: exit %d: %s", code, errOut)
	}
	var apps []map[string]any
	if err := json.Unmarshal([]byte(out), &apps); err != nil {
		t.Fatalf("status -json output is not a JSON array: %v\n%s", err, out)
	}
	for _, a := range apps {
		if a["name"] == app {
			return a
		}
	}
	t.Fatalf("status -json has no app %q:\n%s", app, out)
	return nil
}
