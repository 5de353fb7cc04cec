// Package sdnotify speaks systemd's notify protocol (sd_notify(3)) both
// ways: Notifier tells systemd about the daemon's state when it runs as a
// Type=notify service (outside systemd it does nothing), and Listener
// receives what the apps started with ready: {notify: true} say.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Messages the daemon sends (see sd_notify(3)).
const (
	Ready     = "READY=1"
	Stopping  = "STOPPING=1"
	Reloading = "RELOADING=1"
)

// Status is a one-line human-readable status message shown by
// `systemctl status`.
func Status(s string) string {
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}

// Notifier sends notifications to the socket systemd gave the service.
type Notifier struct {
	// Socket is NOTIFY_SOCKET: a path, or "@name" for an abstract socket.
	// Empty means not running under systemd: Notify does nothing.
	Socket string
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET.
func FromEnv() *Notifier {
	return &Notifier{Socket: os.Getenv("NOTIFY_SOCKET")}
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.Socket != "" }

// Notify sends the given assignments ("READY=1", Status("...")) as one
// datagram. It is a no-op when not running under systemd.
func (n *Notifier) Notify(msgs ...string) error {
	if !n.Enabled() {
		return nil
	}
	// An abstract socket is given as "@name", which is also how Go's
	// net package spells the leading NUL byte: no translation needed.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.Socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notifying systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(msgs, "\n"))); err != nil {
		return fmt.Errorf("notifying systemd: %w", err)
	}
	return nil
}
