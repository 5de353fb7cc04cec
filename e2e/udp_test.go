package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// freeUDPAddr is a loopback address whose port is free for UDP now.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// freeBothAddr is a loopback address whose port is free for TCP and UDP.
func freeBothAddr(t *testing.T) string {
	t.Helper()
	for range 64 {
		addr := freeUDPAddr(t)
		if ln, err := net.Listen("tcp4", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no loopback port free in both TCP and UDP")
	return ""
}

// udpExchange sends msg from a fresh client socket and returns the reply,
// or an error when none comes within timeout: one try, no retry.
func udpExchange(addr, msg string, timeout time.Duration) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1<<16)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// waitState waits until app's state in status is want.
func waitState(t *testing.T, state, app, want string) {
	t.Helper()
	testutil.Eventually(t, reloadWait, func() bool { return statusOf(t, state, app)["state"] == want },
		"app %q never became %s", app, want)
}

// TestUDPFirstDatagramWakesAppAndFlowEndsInIdleStop: the first datagram
// to a stopped UDP-only app is held while its program starts (ready once
// it has bound its port) and answered; the flow counts as a connection
// while open; once it ends, the app stops when idle, and the next
// datagram wakes it again.
func TestUDPFirstDatagramWakesAppAndFlowEndsInIdleStop(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen := freeUDPAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [%q, \"-mode\", \"udp-echo\", \"-delay\", \"200ms\", \"-pidfile\", %q]\n"+
			"idle_timeout: 300ms\nudp_flow_timeout: 2s\nstart_timeout: 20s\nstop_timeout: 2s\n",
		listen+"/udp", testutil.TestApp(t), pidfile))
	startDaemon(t, apps, "-state", state)
	for wake := range 2 {
		msg := "query " + strconv.Itoa(wake)
		got, err := udpExchange(listen, msg, 20*time.Second)
		if err != nil || got != msg {
			t.Fatalf("wake %d: reply %q, %v; want %q", wake+1, got, err, msg)
		}
		if a := statusOf(t, state, "echo"); a["state"] != "ready" || a["connections"] != float64(1) {
			t.Errorf("wake %d: with a flow open, status says state %v, connections %v", wake+1, a["state"], a["connections"])
		}
		pid := testutil.ReadPidFile(t, pidfile)
		waitState(t, state, "echo", "stopped")
		if testutil.ProcessAlive(pid) {
			t.Fatalf("wake %d: the program (pid %d) outlived its idle stop", wake+1, pid)
		}
	}
}

// TestTCPAndUDPListenOnOneAppShareOnePort: one app listening on TCP and
// UDP gets one $PORT, free in both; a datagram and a connection reach the
// same program.
func TestTCPAndUDPListenOnOneAppShareOnePort(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	tcp, udp := testutil.FreeAddr(t), freeUDPAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "both.yaml"), fmt.Sprintf(
		"listen: [%q, %q]\ncommand: [%q, \"-mode\", \"tcp-udp-echo\", \"-pidfile\", %q]\nidle_timeout: 1h\nstart_timeout: 20s\nstop_timeout: 2s\n",
		tcp+"/tcp", udp+"/udp", testutil.TestApp(t), pidfile))
	startDaemon(t, apps, "-state", state)
	if got, err := udpExchange(udp, "over udp", 20*time.Second); err != nil || got != "over udp" {
		t.Fatalf("UDP reply %q, %v", got, err)
	}
	pid := testutil.ReadPidFile(t, pidfile)
	if got := testutil.EchoOnce(t, tcp, "over tcp"); got != "over tcp" {
		t.Fatalf("TCP reply %q", got)
	}
	if again := testutil.ReadPidFile(t, pidfile); again != pid {
		t.Fatalf("TCP reached pid %d, UDP pid %d: two programs", again, pid)
	}
	a := statusOf(t, state, "both")
	if a["pid"] != float64(pid) {
		t.Errorf("status pid %v, want %d", a["pid"], pid)
	}
	if listen := fmt.Sprint(a["listen"]); !strings.Contains(listen, udp+"/udp") || strings.Contains(listen, "/tcp") {
		t.Errorf("status listen %s: want the UDP address with its suffix and the TCP one without", listen)
	}
}

// TestDnsmasqRecipeAnswersTheFirstQueryOfEveryWake: the README's dnsmasq
// recipe; dig's first and only try (+tries=1) to a stopped app is
// answered, and the app stops again when idle.
func TestDnsmasqRecipeAnswersTheFirstQueryOfEveryWake(t *testing.T) {
	needPrograms(t, "dnsmasq-base", "/usr/sbin/dnsmasq")
	needPrograms(t, "bind9-dnsutils", "/usr/bin/dig")
	apps, state := t.TempDir(), stateDir(t)
	// One port free in both protocols, as the recipe listens on both.
	listen := freeBothAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "dns.yaml"), replaceAll(t, recipeBlocks(t, "dnsmasq (DNS over UDP and TCP)")[0],
		`"127.0.0.1:53/udp", "127.0.0.1:53"`, strconv.Quote(listen+"/udp")+", "+strconv.Quote(listen),
		"udp_flow_timeout: 30s", "udp_flow_timeout: 200ms",
		"idle_timeout: 10m", "idle_timeout: 300ms"))
	startDaemon(t, apps, "-state", state)
	host, port, _ := net.SplitHostPort(listen)
	for wake := range 2 {
		out, err := exec.Command("/usr/bin/dig", "+tries=1", "+time=20", "+short", "@"+host, "-p", port, "www.lab.example").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "192.0.2.10" {
			t.Fatalf("wake %d: dig: %v\n%s", wake+1, err, out)
		}
		waitState(t, state, "dns", "stopped")
	}
	// The same server answers over TCP.
	out, err := exec.Command("/usr/bin/dig", "+tcp", "+tries=1", "+time=20", "+short", "@"+host, "-p", port, "www.lab.example").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "192.0.2.10" {
		t.Fatalf("dig +tcp: %v\n%s", err, out)
	}
}
