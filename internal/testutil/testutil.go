// Package testutil holds helpers shared by DynaPM's tests: building the test
// server program, finding free ports, waiting on conditions with a deadline,
// and looking at processes.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testAppPackage is the import path of the test server program.
const testAppPackage = "github.com/dynapm/dynapm/internal/testapp"

// buildTestApp builds the test server once per test binary. The binary stays
// in its temporary directory for the life of the test process (tests of the
// same binary share it).
var buildTestApp = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "dynapm-testapp-")
	if err != nil {
		return "", fmt.Errorf("creating build dir: %w", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(dir, "testapp")
	cmd := exec.Command(goBin, "build", "-o", bin, testAppPackage)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building testapp: %w\n%s", err, out)
	}
	return bin, nil
})

// TestApp returns the path of the test server program (internal/testapp),
// building it at the first call in this test binary.
func TestApp(t testing.TB) string {
	t.Helper()
	bin, err := buildTestApp()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// handedOut are the ports FreePort returned in this test process: the
// kernel may hand the same free port to two binds in a row, and two apps
// of one test given the same port would fight over it.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, and
// that no earlier call in this process returned.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 1000 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatal("finding a free port: every one offered was handed out before")
	return 0
}

// FreeAddr returns "127.0.0.1:PORT" for a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// pollInterval is how often Eventually checks its condition.
const pollInterval = 5 * time.Millisecond

// Eventually polls cond every few milliseconds until it returns true, and
// fails the test with the formatted message if timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
			return
		}
		time.Sleep(pollInterval)
	}
}

// ProcessAlive reports whether pid names a live process: one that exists and
// is not a zombie waiting to be reaped.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && err != syscall.EPERM {
		return false
	}
	state, err := processState(pid)
	if err != nil {
		// Gone between the two checks.
		return false
	}
	return state != 'Z' && state != 'X'
}

// processState reads the state letter from /proc/PID/stat.
func processState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may hold spaces and parentheses: the
	// state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %q", pid, b)
	}
	return b[i+2], nil
}

// ReadPidFile waits (up to 10 s) until path holds a pid and returns it.
func ReadPidFile(t testing.TB, path string) int {
	t.Helper()
	var pid int
	Eventually(t, 10*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || n <= 0 {
			return false
		}
		pid = n
		return true
	}, "pid file %s not written", path)
	return pid
}

// BoundSocket returns a TCP socket bound to a free port on 127.0.0.1, not
// listening (a connect to it is refused until the caller calls
// syscall.Listen on fd), and its address. It is closed at cleanup.
func BoundSocket(t testing.TB) (fd int, addr netip.AddrPort) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
}

// RerunSuite runs this test binary again with its arguments and env added
// to its environment, its output going to this one's, after printing
// banner: a package's TestMain runs its whole suite a second way with it.
func RerunSuite(banner string, env ...string) error {
	fmt.Println(banner)
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// ProcState returns the state letter of pid from /proc/PID/stat (R, S,
// T for stopped, Z...), 0 if it is gone.
func ProcState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// Frozen reports whether pid is suspended: stopped by a signal (state T),
// or in a cgroup v2 whose cgroup.events says frozen (the freezer leaves
// its tasks in state S).
func Frozen(pid int) bool {
	if ProcState(pid) == 'T' {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		path, ok := strings.CutPrefix(strings.TrimSpace(line), "0::")
		if !ok {
			continue
		}
		for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
			ev, err := os.ReadFile(root + path + "/cgroup.events")
			if err == nil {
				return strings.Contains(string(ev), "frozen 1\n")
			}
		}
	}
	return false
}
