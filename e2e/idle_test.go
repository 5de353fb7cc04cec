package e2e

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// dialFrom connects to addr from the local address src (every 127/8
// address is the loopback's).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// echoFrom sends msg on a connection from src and returns what came back
// before the close.
func echoFrom(t *testing.T, src, addr, msg string) string {
	t.Helper()
	c := dialFrom(t, src, addr)
	if _, err := io.WriteString(c, msg); err != nil {
		return ""
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	return string(got)
}

func TestWakeFromTurnsAwayOtherSourcesWhileTheAppSleeps(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen, metricsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	const reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
	testutil.WriteFile(t, filepath.Join(apps, "home.yaml"), echoAppOn(t, []string{listen}, pidfile, "")+
		"wake_from: [127.0.0.1/32]\nunavailable_reply: \"HTTP/1.1 503 Service Unavailable\\r\\nContent-Length: 0\\r\\n\\r\\n\"\n")
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\n", metricsAddr))
	startDaemon(t, apps, "-state", state, "-config", config)

	// A scanner on 127.0.0.2 gets the reply and wakes nothing.
	if got := echoFrom(t, "127.0.0.2", listen, "probe"); got != reply {
		t.Fatalf("from 127.0.0.2 while asleep: got %q, want the unavailable reply", got)
	}
	if st := statusOf(t, state, "home"); st["state"] != "stopped" || st["starts"] != 0.0 || pidIn(pidfile) != 0 {
		t.Fatalf("127.0.0.2 woke the app: %v", st)
	}
	// 127.0.0.1 wakes it; then 127.0.0.2 is served like anyone.
	if got := echoFrom(t, "127.0.0.1", listen, "owner"); got != "owner" {
		t.Fatalf("from 127.0.0.1: got %q", got)
	}
	if got := echoFrom(t, "127.0.0.2", listen, "served"); got != "served" {
		t.Fatalf("from 127.0.0.2 while running: got %q", got)
	}
	out := scrapeMetrics(t, metricsAddr)
	if !strings.Contains(out, `dynapm_app_turned_away_total{app="home"} 1`+"\n") {
		t.Errorf("metrics do not count one turned-away connection:\n%s", out)
	}
}

func TestClientIdleTimeoutClosesASilentConnectionAndKeepsAChattyOne(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"),
		echoAppOn(t, []string{listen}, filepath.Join(t.TempDir(), "pid"), "")+"client_idle_timeout: 600ms\n")
	startDaemon(t, apps)

	silent, chatty := dialFrom(t, "127.0.0.1", listen), dialFrom(t, "127.0.0.1", listen)
	for _, c := range []net.Conn{silent, chatty} {
		if got := roundTrip(t, c, "hello"); got != "hello" {
			t.Fatalf("first echo: %q", got)
		}
	}
	closed := make(chan struct{})
	go func() {
		_, _ = io.ReadAll(silent)
		close(closed)
	}()
	// The chatty client talks every 150ms for 1.8s: never quiet for 600ms.
	for end := time.Now().Add(1800 * time.Millisecond); time.Now().Before(end); {
		if got := roundTrip(t, chatty, "tick"); got != "tick" {
			t.Fatalf("the chatty connection: %q", got)
		}
		<-time.After(150 * time.Millisecond) // the client's pace, not synchronisation
	}
	select {
	case <-closed:
	default:
		t.Fatal("the silent connection is still open after three client_idle_timeouts")
	}
}

// roundTrip sends msg on c and reads as many bytes back.
func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		return ""
	}
	buf := make([]byte, len(msg))
	n, _ := io.ReadFull(c, buf)
	return string(buf[:n])
}

func TestIdleWhenTrafficStopsAnAppWhoseClientKeepsASilentConnection(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	traffic, conns := testutil.FreeAddr(t), testutil.FreeAddr(t)
	trafficPid, connsPid := filepath.Join(t.TempDir(), "pid"), filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "traffic.yaml"),
		testutil.EchoApp(t, traffic, trafficPid, "")+"idle_when: traffic\n")
	testutil.WriteFile(t, filepath.Join(apps, "conns.yaml"), testutil.EchoApp(t, conns, connsPid, ""))
	d := startDaemon(t, apps, "-state", state)

	// Each client is served once, then keeps its connection open and silent.
	held := map[string]net.Conn{}
	for _, addr := range []string{traffic, conns} {
		held[addr] = dialFrom(t, "127.0.0.1", addr)
		if got := roundTrip(t, held[addr], "hi"); got != "hi" {
			t.Fatalf("%s: %q", addr, got)
		}
	}
	pid := testutil.ReadPidFile(t, trafficPid)
	// idle_timeout is 300ms: traffic stops with its connection open, and
	// the stop closes that connection.
	d.waitLog(t, `msg="app stopped"`, "app=traffic", "reason=idle")
	testutil.Eventually(t, 10*time.Second, func() bool { return !testutil.ProcessAlive(pid) }, "pid %d still alive", pid)
	if _, err := io.ReadAll(held[traffic]); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Errorf("the quiet connection of the stopped app: %v; want it closed", err)
	}
	// conns, idle for as long, is kept up by its open connection.
	if st := statusOf(t, state, "conns"); st["state"] != "ready" {
		t.Errorf("conns: %v; want ready while its connection is open", st["state"])
	}
	if got := roundTrip(t, held[conns], "still"); got != "still" {
		t.Errorf("conns' connection: %q", got)
	}
}

func TestFrozenAppThawsForAConnectionAndDynapmStartAndStopsForDynapmStop(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen, metricsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), testutil.EchoApp(t, listen, pidfile, "")+"idle_action: freeze\n")
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\n", metricsAddr))
	d := startDaemon(t, apps, "-state", state, "-config", config)

	if got := testutil.EchoOnce(t, listen, "wake"); got != "wake" {
		t.Fatalf("echo = %q", got)
	}
	pid := testutil.ReadPidFile(t, pidfile)
	waitFrozen := func() {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() bool {
			return statusOf(t, state, "web")["state"] == "frozen" && testutil.Frozen(pid)
		}, "web not frozen with pid %d stopped: %v", pid, statusOf(t, state, "web"))
	}
	waitFrozen()
	if out := scrapeMetrics(t, metricsAddr); !strings.Contains(out, `dynapm_app_state{app="web",state="frozen"} 1`+"\n") {
		t.Errorf("metrics do not show web frozen:\n%s", out)
	}
	// A connection is served by the same process, thawed.
	if got := testutil.EchoOnce(t, listen, "thawed"); got != "thawed" {
		t.Fatalf("echo after the freeze = %q", got)
	}
	if st := statusOf(t, state, "web"); st["pid"] != float64(pid) || st["starts"] != 1.0 {
		t.Fatalf("after the thaw: %v; want pid %d, one start", st, pid)
	}
	waitFrozen()
	// Bytes a client writes while its connection thaws the app reach the
	// program in order.
	c := dialFrom(t, "127.0.0.1", listen)
	var sent strings.Builder
	for i := range 200 {
		line := fmt.Sprintf("line %d of a connection to a frozen app\n", i)
		sent.WriteString(line)
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatalf("writing to the frozen app: %v", err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(c); string(got) != sent.String() {
		t.Fatalf("the frozen app echoed %d bytes (%v), want the %d sent in order", len(got), err, sent.Len())
	}
	waitFrozen()
	// dynapm start thaws it too.
	if code, _, errOut := dynapm(t, "start", "web", "-state", state); code != 0 {
		t.Fatalf("dynapm start: exit %d: %s", code, errOut)
	}
	// (It freezes again 300ms later: the log tells what happened.)
	d.waitLog(t, `msg="app thawed"`, "app=web", "reason=manual")
	if st := statusOf(t, state, "web"); st["pid"] != float64(pid) || st["starts"] != 1.0 {
		t.Fatalf("after dynapm start: %v; want pid %d, one start", st, pid)
	}
	waitFrozen()
	// dynapm stop stops it.
	if code, _, errOut := dynapm(t, "stop", "web", "-state", state); code != 0 {
		t.Fatalf("dynapm stop: exit %d: %s", code, errOut)
	}
	if st := statusOf(t, state, "web"); st["state"] != "stopped" || testutil.ProcessAlive(pid) {
		t.Fatalf("after dynapm stop: %v, pid %d alive %v", st, pid, testutil.ProcessAlive(pid))
	}
}
