package appfile

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/dynapm/dynapm/internal/unixaddr"
)

// DefaultSocketMode is the mode of a unix: listen socket when socket_mode
// is left out: anyone may connect, as to a TCP port on the loopback (and
// as systemd's SocketMode= and nginx's listen unix: default to). A tighter
// mode, or a directory only some may enter, limits who.
const DefaultSocketMode = 0o666

// MaxSocketPath is the longest path a Unix socket can be bound or dialed
// at: sun_path holds 108 bytes, the last one the terminating NUL.
const MaxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// Socket is how DynaPM creates the socket file of each unix: listen
// address of an app, as systemd's SocketMode=, SocketUser= and
// SocketGroup= do.
type Socket struct {
	// Mode is the file's permission bits (DefaultSocketMode unless set).
	Mode uint32
	// User and Group, when set, own the file (names or numeric ids); empty
	// leaves it the daemon's user's and group's.
	User, Group string
}

// checkSocketPath validates the path of a unix: address: absolute, clean
// and short enough for sun_path.
func checkSocketPath(p string) error {
	switch {
	case !filepath.IsAbs(p):
		return fmt.Errorf("expected an absolute path after unix:, such as unix:/run/app.sock, got %s", Quote(unixaddr.Prefix+p))
	case filepath.Clean(p) != p || strings.HasSuffix(p, "/"):
		return fmt.Errorf("expected a clean path after unix: (no //, /./, /../ or trailing /), such as %s, got %s", Quote(unixaddr.Prefix+filepath.Clean(p)), Quote(unixaddr.Prefix+p))
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("expected a path without NUL bytes after unix:, got %s", Quote(unixaddr.Prefix+p))
	case len(p) > MaxSocketPath:
		return fmt.Errorf("expected a socket path of at most %d bytes (the kernel's limit), got %d bytes in %s", MaxSocketPath, len(p), Quote(unixaddr.Prefix+p))
	}
	return nil
}

// UnixUpstream returns the socket file the app's program serves on when
// its upstream is "unix:/path", else "".
func (s *Spec) UnixUpstream() string { return unixaddr.Path(s.Upstream) }

// HasUnixListen reports whether some listen address of the app is a
// socket file.
func (s *Spec) HasUnixListen() bool {
	for _, l := range s.Listen {
		if unixaddr.Path(l) != "" {
			return true
		}
	}
	return false
}

// PicksSocket reports whether DynaPM picks a socket file for the app's
// program, passed as $SOCKET: no upstream is given and the command or
// the env names $SOCKET (or ${SOCKET}). The program serves on that file
// rather than on a port.
func (s *Spec) PicksSocket() bool {
	if s.Upstream != "" {
		return false
	}
	for _, a := range s.Command {
		if mentions(a, "SOCKET") {
			return true
		}
	}
	for _, v := range s.Env {
		if mentions(v, "SOCKET") {
			return true
		}
	}
	return false
}

// mentions reports whether s names the variable name as ${name} or $name
// (not followed by a name character), as ExpandPort reads them.
func mentions(s, name string) bool {
	if strings.Contains(s, "${"+name+"}") {
		return true
	}
	for rest := s; ; {
		i := strings.Index(rest, "$"+name)
		if i < 0 {
			return false
		}
		rest = rest[i+1+len(name):]
		if rest == "" || !isNameByte(rest[0]) {
			return true
		}
	}
}

// socketField decodes socket_mode, socket_user and socket_group.
func (d *decoder) socketField(s *Spec, key string, v any) {
	switch key {
	case "socket_mode":
		// A string, as umask: an unquoted 0660 is read as decimal 660.
		str, ok := d.str(key, v, `an octal string such as "0660"`)
		if !ok {
			return
		}
		n, err := strconv.ParseUint(str, 8, 32)
		if err != nil || n > 0o777 || str == "" {
			d.errorf(key, `expected an octal mode from "0000" to "0777" such as "0660", got %s`, Quote(str))
			return
		}
		s.Socket.Mode = uint32(n)
	case "socket_user", "socket_group":
		what := strings.TrimPrefix(key, "socket_")
		str, ok := d.str(key, v, "a "+what+" name or a numeric id")
		if !ok {
			return
		}
		if str == "" || strings.ContainsAny(str, ":/ \t\n") {
			d.errorf(key, "expected a %s name or a numeric id, got %s", what, Quote(str))
			return
		}
		if key == "socket_user" {
			s.Socket.User = str
		} else {
			s.Socket.Group = str
		}
	}
}

// unixChecks refuses what a unix: address cannot do: the socket keys
// without a unix: listen address; match, PROXY headers and wake_from on a
// socket file (a Unix client has no IP address, and apps do not share a
// socket file); a hand-off (its connections are counted by port); and
// several instances, another user or another driver behind a $SOCKET.
func (d *decoder) unixChecks(s *Spec, raw map[string]any) {
	if !s.HasUnixListen() {
		for _, k := range []string{"socket_mode", "socket_user", "socket_group"} {
			if _, ok := raw[k]; ok {
				d.errorf(k, "the app has no unix: listen address (such as \"unix:/run/app.sock\"); remove the key or add one")
			}
		}
	} else {
		if s.Match.set() {
			d.errorf("match", "expected no match on an app with a unix: listen address: apps share a socket file by nothing")
		}
		if s.ProxyProtocol != "" {
			d.errorf("proxy_protocol", "expected no proxy_protocol on an app with a unix: listen address: its clients have no IP address to send")
		}
		if s.Handoff != HandoffProxy {
			d.errorf("handoff", "expected handoff: proxy on an app with a unix: listen address: a handed-off socket's connections are counted by port, which a socket file has none of")
		}
		if len(s.WakeFrom) > 0 {
			d.errorf("wake_from", "expected no wake_from on an app with a unix: listen address: its clients have no IP address to match (limit them with socket_mode and socket_group)")
		}
	}
	picks := s.PicksSocket()
	if picks && s.Scale.Max > 1 {
		d.errorf("scale", "an app whose program serves on $SOCKET, a socket file, runs one instance: leave scale out, or serve on $PORT")
	}
	if picks && (s.User != "" || s.Group != "") {
		field := "user"
		if s.User == "" {
			field = "group"
		}
		d.errorf(field, "$SOCKET is a file in DynaPM's state directory, private to the daemon's user: a program run as another user cannot create it; give upstream: unix:/path in a directory of that user instead")
	}
	if picks || s.UnixUpstream() != "" {
		if _, udp := s.Protocols(); udp {
			field := "upstream"
			if picks {
				field = "command"
			}
			d.errorf(field, "a socket file carries a stream, not datagrams: an app with a UDP listen address serves on a port ($PORT, or a host:port upstream)")
		}
		if s.Driver != "" && s.Driver != DriverExec {
			d.errorf("upstream", "driver %s has no socket file to serve on: a unix: upstream (or $SOCKET) needs driver exec", s.Driver)
		}
		if s.Ready.HTTP != "" || s.Ready.TCP.Expect != "" {
			d.errorf("ready", "ready.http and ready.tcp probe a TCP port; an app served on a socket file is ready once a connect to it succeeds (the default), or by ready.command, notify or log")
		}
	}
}
