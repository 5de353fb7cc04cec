package e2e

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// handoffConn is a connection to a handoff app's testapp -hello: the pid
// that accepted it, and a reader for the rest.
type handoffConn struct {
	net.Conn
	r   *bufio.Reader
	pid int
}

// dialHandoff connects to addr and reads the greeting of the program that
// accepted the connection.
func dialHandoff(t *testing.T, addr string) *handoffConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	hc := &handoffConn{Conn: c, r: bufio.NewReader(c)}
	hc.pid = hc.greeting(t)
	return hc
}

func (c *handoffConn) greeting(t *testing.T) int {
	t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the greeting: %v (got %q)", err, line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "testapp pid=")))
	if err != nil {
		t.Fatalf("greeting %q: %v", line, err)
	}
	return pid
}

// echo sends msg and returns the line that comes back.
func (c *handoffConn) echo(t *testing.T, msg string) string {
	t.Helper()
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		t.Fatal(err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("echo %q: %v (got %q)", msg, err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// socketApp is an app file for testapp serving the sockets DynaPM hands
// it, greeting each connection with its pid.
func socketApp(t *testing.T, listen []string, pidfile, extra string) string {
	t.Helper()
	return fmt.Sprintf("listen: [%q, %q]\nhandoff: socket\ncommand: [%q, \"-listen-fds\", \"-mode\", \"echo\", \"-hello\", \"-pidfile\", %q%s]\nidle_timeout: 300ms\nstart_timeout: 20s\nstop_timeout: 5s\n",
		listen[0], listen[1], testutil.TestApp(t), pidfile, extra)
}

func TestSocketHandoffServesEveryAddressAndStopsWhenIdle(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen := []string{testutil.FreeAddr(t), testutil.FreeAddr(t)}
	pidfile := filepath.Join(t.TempDir(), "pid")
	metricsAddr := testutil.FreeAddr(t)
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\n", metricsAddr))
	// -term-linger: at SIGTERM the program stops accepting and takes a
	// second to exit, as a server finishing its requests does: a window
	// to connect in while the app stops.
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), socketApp(t, listen, pidfile, `, "-term-linger", "1s"`))
	d := startDaemon(t, apps, "-state", state, "-config", config)

	// The first connection, to the second address, wakes the app; the
	// program accepts it itself from the socket it was given.
	first := dialHandoff(t, listen[1])
	if got := first.echo(t, "one"); got != "one" {
		t.Fatalf("echo = %q", got)
	}
	pid := testutil.ReadPidFile(t, pidfile)
	if first.pid != pid {
		t.Fatalf("the connection was accepted by pid %d, not the program %d", first.pid, pid)
	}
	second := dialHandoff(t, listen[0])
	if second.pid != pid || second.echo(t, "two") != "two" {
		t.Fatalf("the other address was served by pid %d, want %d", second.pid, pid)
	}
	// Status and metrics count them from the kernel: DynaPM holds none.
	if a := statusOf(t, state, "web"); a["handoff"] != "socket" || a["connections"] != float64(2) {
		t.Errorf("status: handoff %v, connections %v; want socket, 2", a["handoff"], a["connections"])
	}
	metrics := scrapeMetrics(t, metricsAddr)
	for _, want := range []string{`dynapm_app_handoff{app="web",handoff="socket"} 1`, `dynapm_app_open_connections{app="web"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Open connections keep it up past idle_timeout: they are counted
	// from the kernel at each idle check. Not a wait for something to
	// happen: two idle_timeouts in which a stop would come.
	time.Sleep(600 * time.Millisecond)
	if !testutil.ProcessAlive(pid) || statusOf(t, state, "web")["state"] != "ready" {
		t.Fatalf("the app did not stay up with connections open:\n%s", d.out)
	}
	first.Close()
	second.Close()

	// Idle: the stop begins; a connection made while the program is
	// stopping waits in the backlog and is served by the next start.
	testutil.Eventually(t, 10*time.Second, func() bool { return statusOf(t, state, "web")["state"] == "stopping" },
		"the idle app did not begin to stop:\n%s", d.out)
	late := dialHandoff(t, listen[0])
	if late.pid == pid {
		t.Fatalf("the connection made while stopping was accepted by the stopping program %d", pid)
	}
	if got := late.echo(t, "late"); got != "late" {
		t.Fatalf("echo = %q", got)
	}
	if testutil.ProcessAlive(pid) {
		t.Errorf("the stopped program %d is still alive", pid)
	}
	d.waitLog(t, `msg="app stopped"`, "app=web", "reason=idle")
}

func TestSocketHandoffProgramExitingWhenIdleIsAStop(t *testing.T) {
	apps := t.TempDir()
	listen := []string{testutil.FreeAddr(t), testutil.FreeAddr(t)}
	pidfile := filepath.Join(t.TempDir(), "pid")
	// The program leaves by itself, as socket-activated services do;
	// DynaPM's own idle_timeout is far off. After more than the shortest
	// backoff (1s): one that exits at once is taken for a crash.
	app := strings.Replace(socketApp(t, listen, pidfile, `, "-exit-idle", "1100ms"`), "idle_timeout: 300ms", "idle_timeout: 10m", 1)
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), app)
	d := startDaemon(t, apps)

	c := dialHandoff(t, listen[0])
	if got := c.echo(t, "hi"); got != "hi" {
		t.Fatalf("echo = %q", got)
	}
	c.Close()
	d.waitLog(t, `msg="app stopped"`, "app=web", "reason=exited")
	if strings.Contains(d.out.String(), `msg="app exited"`) {
		t.Fatalf("an exit of its own was taken for a crash:\n%s", d.out)
	}
	// Watched again: the next connection starts it afresh, at once.
	again := dialHandoff(t, listen[1])
	if again.pid == c.pid || again.echo(t, "again") != "again" {
		t.Fatalf("after the exit: pid %d (before %d)", again.pid, c.pid)
	}
}
