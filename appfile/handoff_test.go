package appfile

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseHandoff(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "web.yaml")
	base := "listen: [':1001', ':1002']\ncommand: [./srv]\n"
	cases := []struct {
		extra, want string
		off         bool
		inetdMax    int
	}{
		{"", HandoffProxy, false, DefaultInetdMax},
		{"handoff: proxy\n", HandoffProxy, false, DefaultInetdMax},
		{"handoff: socket\nidle_timeout: 1m\nready: {notify: true}\n", HandoffSocket, true, DefaultInetdMax},
		{"handoff: socket\nscale: {max: 1}\nmode: persistent\n", HandoffSocket, true, 1},
		{"handoff: inetd\nscale: {max: 5}\n", HandoffInetd, true, 5},
		{"handoff: inetd\n", HandoffInetd, true, DefaultInetdMax},
	}
	for _, c := range cases {
		s, err := Parse(p, []byte(base+c.extra))
		if err != nil {
			t.Fatalf("%q: %v", c.extra, err)
		}
		if s.Handoff != c.want || s.HandsOff() != c.off || s.InetdMax() != c.inetdMax {
			t.Errorf("%q: Handoff %q HandsOff %v InetdMax %d, want %q %v %d", c.extra,
				s.Handoff, s.HandsOff(), s.InetdMax(), c.want, c.off, c.inetdMax)
		}
	}
}

func TestParseHandoffErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "web.yaml")
	base := "listen: ':1001'\ncommand: [./srv]\n"
	cases := []struct {
		extra, field, want string
	}{
		{"handoff: splice\n", "handoff", `expected one of proxy, socket, inetd, got "splice"`},
		{"handoff: 3\n", "handoff", "expected one of proxy, socket, inetd"},
		{"handoff: socket\nupstream: 127.0.0.1:2001\n", "upstream", "not used with handoff: socket: the program accepts"},
		{"handoff: socket\nproxy_protocol: v2\n", "proxy_protocol", "not used with handoff: socket"},
		{"handoff: socket\nmatch: {host: [a.example]}\n", "match", "cannot be shared by name"},
		{"handoff: socket\nmax_pending: 5\n", "max_pending", "listen backlog"},
		{"handoff: socket\nunavailable_reply: x\n", "unavailable_reply", "does not accept"},
		{"handoff: socket\nready: {http: /}\n", "ready.http", "no upstream to probe"},
		{"handoff: socket\nready: {tcp: {expect: x}}\n", "ready.tcp", "no upstream to probe"},
		{"handoff: socket\nscale: {max: 2}\n", "scale", "scale.max must be 1, got 2"},
		{"handoff: inetd\nscale: {max: 2, min: 1}\n", "scale.min", "only scale.max is"},
		{"handoff: inetd\nidle_timeout: 1m\n", "idle_timeout", "not used with handoff: inetd: each program serves one connection"},
		{"handoff: inetd\nmode: always\n", "mode", "expected on-demand, got always"},
		{"handoff: inetd\nready: {notify: true}\n", "ready", "not used with handoff: inetd"},
		{"handoff: inetd\nwake: [{cron: '0 8 * * *'}]\n", "wake", "a program runs only for a connection"},
	}
	for _, c := range cases {
		t.Run(c.extra, func(t *testing.T) {
			s, err := Parse(p, []byte(base+c.extra))
			if s != nil {
				t.Errorf("got a spec along with errors: %+v", s)
			}
			requireFieldError(t, err, p, c.field, c.want)
		})
	}
	// Another driver: the key is refused with the driver named.
	other := "listen: ':1001'\ndriver: command\nstart: [a]\nstop: [b]\nupstream: 127.0.0.1:2001\nhandoff: socket\n"
	_, err := Parse(p, []byte(other))
	requireFieldError(t, err, p, "handoff", "it needs driver exec, got driver command")
}

func TestHandoffAddressIsItsOwn(t *testing.T) {
	dir := t.TempDir()
	a, err := Parse(filepath.Join(dir, "a.yaml"), []byte("listen: '127.0.0.1:1001'\ncommand: [./srv]\nhandoff: socket\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(filepath.Join(dir, "b.yaml"), []byte("listen: '127.0.0.1:1001'\ncommand: [./srv]\nmatch: {host: [b.example]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	errs := CheckConflicts([]*Spec{a, b})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "handoff: socket gets the listening socket") {
		t.Fatalf("errors %v, want one saying the address is a's alone", errs)
	}
}

func TestHandoffRestarts(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "web.yaml")
	parse := func(text string) *Spec {
		t.Helper()
		s, err := Parse(p, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	proxy := parse("listen: ':1001'\ncommand: [./srv]\n")
	socket := parse("listen: ':1001'\ncommand: [./srv]\nhandoff: socket\n")
	moved := parse("listen: ':1002'\ncommand: [./srv]\nhandoff: socket\n")
	proxyMoved := parse("listen: ':1002'\ncommand: [./srv]\n")
	if !socket.NeedsRestart(proxy) || socket.Equal(proxy) {
		t.Error("a changed handoff does not restart the program")
	}
	if !moved.NeedsRestart(socket) {
		t.Error("a socket program given other listen addresses does not restart")
	}
	if proxyMoved.NeedsRestart(proxy) {
		t.Error("a proxied app restarts for a new listen address")
	}
}
