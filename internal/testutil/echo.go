package testutil

import (
	"bufio"
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
