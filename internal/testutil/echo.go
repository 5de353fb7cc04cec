package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// EchoLine sends msg and a newline through a new connection to addr and
// returns the line that comes back, trimmed; the dial and the exchange are
// each bounded by timeout. For the test server in echo mode.
func EchoLine(t testing.TB, addr, msg string, timeout time.Duration) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading echo: %v", err)
	}
	return strings.TrimSpace(line)
}

// EchoOnce connects to addr, sends msg, half-closes and returns the whole
// reply: one request and answer through the test server in echo mode.
func EchoOnce(t testing.TB, addr, msg string) string {
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

// EchoApp is an app file serving the test server in echo mode on listen,
// writing its pid to pidfile, with a short idle timeout; extra goes at the
// end of its command (`, "-delay", "1s"`).
func EchoApp(t testing.TB, listen, pidfile, extra string) string {
	t.Helper()
	return fmt.Sprintf("listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-pidfile\", %q%s]\nidle_timeout: 300ms\nstart_timeout: 20s\nstop_timeout: 2s\n",
		listen, TestApp(t), pidfile, extra)
}
