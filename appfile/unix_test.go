package appfile

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseUnixSockets(t *testing.T) {
	type tc = loadCase
	long := "/" + strings.Repeat("a", MaxSocketPath)
	cases := []tc{
		{name: "unix listen, tcp upstream, defaults", yaml: "listen: 'unix:/run/app.sock'\ncommand: x\n",
			check: func(t *testing.T, s *Spec) {
				if !slices.Equal(s.Listen, []string{"unix:/run/app.sock"}) || !s.HasUnixListen() {
					t.Errorf("Listen = %q, HasUnixListen %v", s.Listen, s.HasUnixListen())
				}
				if s.Socket != (Socket{Mode: DefaultSocketMode}) || s.PicksSocket() || s.UnixUpstream() != "" {
					t.Errorf("Socket = %+v, PicksSocket %v, UnixUpstream %q", s.Socket, s.PicksSocket(), s.UnixUpstream())
				}
				if tcp, udp := s.Protocols(); !tcp || udp {
					t.Errorf("a unix: listen is a stream: Protocols = %v, %v", tcp, udp)
				}
				if ListenKey(s.Listen[0]) != "unix:/run/app.sock" {
					t.Errorf("ListenKey = %q", ListenKey(s.Listen[0]))
				}
			}},
		{name: "socket keys", yaml: "listen: ['unix:/run/a.sock', '127.0.0.1:80']\ncommand: x\nsocket_mode: '0660'\nsocket_user: www-data\nsocket_group: '33'\n",
			check: func(t *testing.T, s *Spec) {
				if s.Socket != (Socket{Mode: 0o660, User: "www-data", Group: "33"}) {
					t.Errorf("Socket = %+v", s.Socket)
				}
			}},
		{name: "unix upstream", yaml: "listen: '127.0.0.1:80'\nupstream: 'unix:/srv/app/app.sock'\ncommand: x\n",
			check: func(t *testing.T, s *Spec) {
				if s.UnixUpstream() != "/srv/app/app.sock" || s.PicksSocket() {
					t.Errorf("UnixUpstream = %q, PicksSocket %v", s.UnixUpstream(), s.PicksSocket())
				}
			}},
		{name: "picked socket", yaml: "listen: 'unix:/run/a.sock'\ncommand: 'socat UNIX-LISTEN:$SOCKET,fork EXEC:cat'\n",
			check: func(t *testing.T, s *Spec) {
				if !s.PicksSocket() {
					t.Error("PicksSocket = false")
				}
			}},
		{name: "picked socket in env", yaml: "listen: ':80'\ncommand: [prog]\nenv: {BIND: 'unix:${SOCKET}'}\n",
			check: func(t *testing.T, s *Spec) {
				if !s.PicksSocket() {
					t.Error("PicksSocket = false")
				}
			}},
		{name: "a longer name is not $SOCKET", yaml: "listen: ':80'\ncommand: 'prog $SOCKETS $PORT'\n",
			check: func(t *testing.T, s *Spec) {
				if s.PicksSocket() {
					t.Error("PicksSocket = true")
				}
			}},
		{name: "relative path", yaml: "listen: 'unix:run/a.sock'\ncommand: x\n", field: "listen",
			want: `expected an absolute path after unix:, such as unix:/run/app.sock, got "unix:run/a.sock"`},
		{name: "unclean path", yaml: "listen: 'unix:/run/../a.sock'\ncommand: x\n", field: "listen",
			want: `expected a clean path after unix: (no //, /./, /../ or trailing /), such as "unix:/a.sock"`},
		{name: "long path", yaml: "listen: 'unix:" + long + "'\ncommand: x\n", field: "listen",
			want: "expected a socket path of at most 107 bytes (the kernel's limit), got 108 bytes"},
		{name: "bad upstream path", yaml: "listen: ':80'\nupstream: 'unix:x.sock'\ncommand: x\n", field: "upstream",
			want: "expected an absolute path after unix:"},
		{name: "same socket twice", yaml: "listen: ['unix:/run/a.sock', 'unix:/run/a.sock']\ncommand: x\n", field: "listen[1]",
			want: "is listed twice (also listen[0])"},
		{name: "upstream is the listen", yaml: "listen: 'unix:/run/a.sock'\nupstream: 'unix:/run/a.sock'\ncommand: x\n", field: "upstream",
			want: "DynaPM would proxy the app to itself"},
		{name: "mode not octal", yaml: "listen: 'unix:/run/a.sock'\ncommand: x\nsocket_mode: '0999'\n", field: "socket_mode",
			want: `expected an octal mode from "0000" to "0777" such as "0660", got "0999"`},
		{name: "mode a number", yaml: "listen: 'unix:/run/a.sock'\ncommand: x\nsocket_mode: 660\n", field: "socket_mode",
			want: `expected an octal string such as "0660", got 660`},
		{name: "owner with a colon", yaml: "listen: 'unix:/run/a.sock'\ncommand: x\nsocket_user: 'www:www'\n", field: "socket_user",
			want: `expected a user name or a numeric id, got "www:www"`},
		{name: "socket keys without unix listen", yaml: "listen: ':80'\ncommand: x\nsocket_group: www\n", field: "socket_group",
			want: "the app has no unix: listen address"},
		{name: "match on unix", yaml: "listen: 'unix:/run/a.sock'\ncommand: x\nmatch: {host: [a.example.com]}\n", field: "match",
			want: "expected no match on an app with a unix: listen address"},
		{name: "proxy protocol on unix", yaml: "listen: 'unix:/run/a.sock'\ncommand: x\nproxy_protocol: v2\n", field: "proxy_protocol",
			want: "expected no proxy_protocol on an app with a unix: listen address"},
		{name: "handoff on unix", yaml: "listen: 'unix:/run/a.sock'\ncommand: x\nhandoff: socket\n", field: "handoff",
			want: "expected handoff: proxy on an app with a unix: listen address"},
		{name: "wake_from on unix", yaml: "listen: 'unix:/run/a.sock'\ncommand: x\nwake_from: [127.0.0.1/32]\n", field: "wake_from",
			want: "expected no wake_from on an app with a unix: listen address"},
		{name: "scale with $SOCKET", yaml: "listen: ':80'\ncommand: 'prog $SOCKET'\nscale: {max: 2}\n", field: "scale",
			want: "runs one instance: leave scale out"},
		{name: "scale with unix upstream", yaml: "listen: ':80'\nupstream: 'unix:/run/u.sock'\ncommand: x\nscale: {max: 2}\n", field: "upstream",
			want: "leave upstream out"},
		{name: "$SOCKET as another user", yaml: "listen: ':80'\ncommand: 'prog $SOCKET'\nuser: nobody\n", field: "user",
			want: "$SOCKET is a file in DynaPM's state directory"},
		{name: "udp listen to a socket file", yaml: "listen: ':53/udp'\nupstream: 'unix:/run/u.sock'\ncommand: x\n", field: "upstream",
			want: "a socket file carries a stream, not datagrams"},
		{name: "udp listen to $SOCKET", yaml: "listen: [':53/udp', ':53']\ncommand: 'prog $SOCKET'\n", field: "command",
			want: "a socket file carries a stream, not datagrams"},
		{name: "ready.http on a socket", yaml: "listen: ':80'\nupstream: 'unix:/run/u.sock'\ncommand: x\nready: {http: /}\n", field: "ready",
			want: "ready.http and ready.tcp probe a TCP port"},
	}
	runLoadCases(t, cases)
}

func TestConflictsOfSocketFiles(t *testing.T) {
	dir := t.TempDir()
	load := func(name, yaml string) *Spec {
		t.Helper()
		s, err := Parse(filepath.Join(dir, name+".yaml"), []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := load("a", "listen: 'unix:/run/a.sock'\nupstream: 'unix:/run/a-up.sock'\ncommand: x\n")
	b := load("b", "listen: 'unix:/run/b.sock'\nupstream: 'unix:/run/b-up.sock'\ncommand: x\n")
	if errs := CheckConflicts([]*Spec{a, b}); len(errs) != 0 {
		t.Fatalf("two apps on two socket files clash: %v", errs)
	}
	same := load("same", "listen: 'unix:/run/a.sock'\ncommand: x\n")
	errs := CheckConflicts([]*Spec{a, same})
	if len(errs) != 1 {
		t.Fatalf("want one conflict for a socket file listened on twice, got %v", errs)
	}
	requireFieldError(t, errs[0], same.File, "listen[0]", "neither app has match")
	into := load("into", "listen: 'unix:/run/a-up.sock'\ncommand: x\n")
	errs = CheckConflicts([]*Spec{a, into})
	if len(errs) != 1 {
		t.Fatalf("want one conflict for a listen on another app's upstream, got %v", errs)
	}
	requireFieldError(t, errs[0], into.File, "listen[0]", "is also the upstream of "+a.File)
}
