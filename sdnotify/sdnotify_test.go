package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// listen opens a datagram socket like systemd's notify socket.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyPathSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "n")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "notify")
	c := listen(t, path)
	n := &Notifier{Socket: path}
	if err := n.Notify(Ready, Status("serving 3 apps\nok")); err != nil {
		t.Fatal(err)
	}
	if got, want := receive(t, c), "READY=1\nSTATUS=serving 3 apps ok"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@dynapm-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c := listen(t, name)
	t.Setenv("NOTIFY_SOCKET", name)
	if err := FromEnv().Notify(Stopping); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, c); got != "STOPPING=1" {
		t.Fatalf("got %q", got)
	}
}

func TestNotifyWithoutSystemdDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := FromEnv()
	if n.Enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.Notify(Ready); err != nil {
		t.Fatal(err)
	}
}

func TestNotifyReportsAMissingSocket(t *testing.T) {
	n := &Notifier{Socket: filepath.Join(t.TempDir(), "gone")}
	if err := n.Notify(Ready); err == nil {
		t.Fatal("no error for a missing notify socket")
	}
}
