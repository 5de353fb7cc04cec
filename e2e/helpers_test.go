package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// The daemon and its app files.

// reloadWait bounds waits for a reload; the debounce is 50ms, so this is
// generous for a loaded machine.
const reloadWait = 15 * time.Second

// startAppWithGrandchild runs a daemon with one echo app that forks a
// grandchild ignoring SIGTERM, wakes it, and returns both pids.
func startAppWithGrandchild(t *testing.T) (d *runningDaemon, pid, gpid int) {
	t.Helper()
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	grand := filepath.Join(t.TempDir(), "grandchild")
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), testutil.EchoApp(t, listen, pidfile, fmt.Sprintf(", \"-grandchild\", %q", grand)))
	d = startDaemon(t, apps)
	testutil.EchoOnce(t, listen, "x")
	pid = testutil.ReadPidFile(t, pidfile)
	gpid = testutil.ReadPidFile(t, grand)
	return d, pid, gpid
}

// echoAppOn is testutil.EchoApp on several listen addresses, with a long
// idle timeout so that only reloads stop it.
func echoAppOn(t *testing.T, listen []string, pidfile, extra string) string {
	bin := testutil.TestApp(t)
	quoted := make([]string, len(listen))
	for i, l := range listen {
		quoted[i] = fmt.Sprintf("%q", l)
	}
	return fmt.Sprintf("listen: [%s]\ncommand: [%q, \"-mode\", \"echo\", \"-pidfile\", %q%s]\nidle_timeout: 1h\nstart_timeout: 20s\nstop_timeout: 2s\n",
		strings.Join(quoted, ", "), bin, pidfile, extra)
}

// Clients.

// tryEcho reports whether a fresh connection to addr echoes msg.
func tryEcho(addr, msg string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return false
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return false
	}
	reply, err := io.ReadAll(c)
	return err == nil && string(reply) == msg
}

// refused reports whether nothing listens on addr.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// scrapeMetrics fetches addr's /metrics on a connection of its own, closed
// after it: no idle connection is left in the daemon's counts or to
// outlive the test.
func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// Processes, seen through /proc.

// pidIn returns the pid in path, or 0 if there is none (yet), or it is not
// fully written.
func pidIn(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// fdCount is the number of open descriptors of process pid.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// fdList describes the open descriptors of pid, for failure messages.
func fdList(pid int) string {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, _ := os.ReadDir(dir)
	kinds := map[string]int{}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		if i := strings.IndexByte(target, '['); i > 0 {
			target = target[:i]
		}
		kinds[target]++
	}
	return fmt.Sprint(kinds)
}

// childrenOf returns the pids whose parent is ppid and whose command line
// contains substr.
func childrenOf(ppid int, substr string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(ppid) {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.Contains(string(cmdline), substr) {
			pids = append(pids, pid)
		}
	}
	return pids
}
