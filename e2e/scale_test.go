package e2e

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// openEcho opens a connection through the daemon and checks one round trip,
// which also means the proxy has leased an instance for it.
func openEcho(t *testing.T, addr, msg string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	echoOn(t, c, msg)
	return c
}

// echoOn writes msg on c and reads it back.
func echoOn(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("writing: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo = %q, %v; want %q", buf, err, msg)
	}
}

// TestDaemonScalesAnAppAcrossInstances: a connection beyond the target
// starts a second instance with its own $INSTANCE and port; killing it
// leaves the first instance's connections alone; idle instances stop.
func TestDaemonScalesAnAppAcrossInstances(t *testing.T) {
	apps := t.TempDir()
	pids := t.TempDir()
	listen := testutil.FreeAddr(t)
	bin := testutil.TestApp(t)
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: 'exec %s -mode echo -pidfile %s/$INSTANCE.pid'\n"+
			"scale: {max: 2, target_connections: 1}\nidle_timeout: 300ms\nstart_timeout: 20s\nstop_timeout: 2s\n",
		listen, bin, pids))
	state := stateDir(t)
	d := startDaemon(t, apps, "-state", state)

	a := openEcho(t, listen, "a") // starts instance 0
	pid0 := testutil.ReadPidFile(t, filepath.Join(pids, "0.pid"))
	b := openEcho(t, listen, "b") // beyond the target: served by 0, instance 1 starts
	pid1 := testutil.ReadPidFile(t, filepath.Join(pids, "1.pid"))
	if pid1 == pid0 || !testutil.ProcessAlive(pid0) || !testutil.ProcessAlive(pid1) {
		t.Fatalf("pids %d and %d, want two live processes", pid0, pid1)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(d.out.String(), "reason=scale") && strings.Contains(d.out.String(), "instance=1")
	}, "no log of instance 1 starting for scale:\n%s", d.out)
	c := openEcho(t, listen, "c")

	// The admin API and the status table show both instances.
	testutil.Eventually(t, 20*time.Second, func() bool {
		insts, _ := statusOf(t, state, "web")["instances"].([]any)
		if len(insts) != 2 {
			return false
		}
		for i, want := range []int{pid0, pid1} {
			in, _ := insts[i].(map[string]any)
			if in["index"] != float64(i) || in["pid"] != float64(want) || in["state"] != "ready" || in["upstream"] == "" {
				return false
			}
		}
		return true
	}, "status -json does not show instances 0 (pid %d) and 1 (pid %d) ready: %v", pid0, pid1, statusOf(t, state, "web"))
	code, out, errOut := dynapm(t, "status", "-state", state)
	if code != 0 || !strings.Contains(out, "web#0") || !strings.Contains(out, "web#1") || !strings.Contains(out, strconv.Itoa(pid1)) {
		t.Fatalf("status: exit %d, err %q, want a row per instance:\n%s", code, errOut, out)
	}

	// Killing instance 1 loses at most its own connections: a and b were
	// served by instance 0 and go on.
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(d.out.String(), `msg="app exited"`)
	}, "the daemon did not see instance 1 exit:\n%s", d.out)
	echoOn(t, a, "a again")
	echoOn(t, b, "b again")
	if got := testutil.EchoOnce(t, listen, "new"); got != "new" {
		t.Fatalf("new connection after the crash echoed %q", got)
	}

	// Idle: every instance stops (scale.min 0, on-demand).
	a.Close()
	b.Close()
	c.Close()
	testutil.Eventually(t, 20*time.Second, func() bool {
		p0, p1 := pidIn(filepath.Join(pids, "0.pid")), pidIn(filepath.Join(pids, "1.pid"))
		return !testutil.ProcessAlive(p0) && !testutil.ProcessAlive(p1)
	}, "instances still alive after idle_timeout:\n%s", d.out)
}
