package e2e

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// request connects to addr, sends msg and returns everything read until
// the daemon closes, with the error that ended the read (nil for EOF).
func request(t *testing.T, addr, msg string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	got, err := io.ReadAll(c)
	return string(got), err
}

func TestUnavailableReplyReachesClientsOfACrashingApp(t *testing.T) {
	apps := t.TempDir()
	bin := testutil.TestApp(t)
	const reply = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n"
	replying, bare := testutil.FreeAddr(t), testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "replying.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [%q, \"-crash\"]\nunavailable_reply: \"HTTP/1.1 503 Service Unavailable\\r\\nRetry-After: 30\\r\\nContent-Length: 0\\r\\n\\r\\n\"\n",
		replying, bin))
	testutil.WriteFile(t, filepath.Join(apps, "bare.yaml"), fmt.Sprintf("listen: %q\ncommand: [%q, \"-crash\"]\n", bare, bin))
	startDaemon(t, apps)

	// The first connection wakes the app, which crashes before ready; the
	// second comes while it backs off and must be answered at once too.
	for i, phase := range []string{"failed start", "backoff"} {
		got, err := request(t, replying, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if err != nil || got != reply {
			t.Fatalf("%s (connection %d): got %q, %v; want %q", phase, i, got, err, reply)
		}
	}
	got, err := request(t, bare, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if got != "" {
		t.Fatalf("app without unavailable_reply sent %q (%v); want a bare close", got, err)
	}
}

// A program too slow for its start_timeout: the held client, which sent
// its request while it waited, receives the reply when the wait runs out,
// then a close.
func TestUnavailableReplyReachesAClientHeldPastStartTimeout(t *testing.T) {
	apps := t.TempDir()
	const reply = "-LOADING DynaPM: the app is starting, retry\r\n"
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "slow.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [%q, \"-delay\", \"1h\"]\nstart_timeout: 1s\nstop_timeout: 2s\nunavailable_reply: \"-LOADING DynaPM: the app is starting, retry\\r\\n\"\n",
		listen, testutil.TestApp(t)))
	d := startDaemon(t, apps)

	got, err := request(t, listen, "PING\r\n")
	if err != nil || got != reply {
		t.Fatalf("held past start_timeout: got %q, %v; want %q then a close", got, err, reply)
	}
	// It was the start_timeout that ran out, not a crash of the program.
	d.waitLog(t, `msg="connection closed unserved"`, "app=slow", "start timed out")
}
