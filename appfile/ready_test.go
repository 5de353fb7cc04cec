package appfile

import (
	"slices"
	"strings"
	"testing"
)

func TestParseReadyKinds(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		yaml  string
		kind  string
		check func(r Ready) bool
	}{
		{"", ReadyConnect, func(r Ready) bool { return r.Equal(Ready{}) }},
		{"ready: {}\n", ReadyConnect, func(r Ready) bool { return r.Equal(Ready{}) }},
		{"ready: {notify: false}\n", ReadyConnect, func(r Ready) bool { return !r.Notify }},
		{"ready: {http: /healthz}\n", ReadyHTTP, func(r Ready) bool { return r.HTTP == "/healthz" }},
		{"ready: {notify: true}\n", ReadyNotify, func(r Ready) bool { return r.Notify }},
		{"ready: {command: 'pg_isready -h 127.0.0.1 -p ${PORT}'}\n", ReadyCommand, func(r Ready) bool {
			return slices.Equal(r.Command, []string{"/bin/sh", "-c", "pg_isready -h 127.0.0.1 -p ${PORT}"})
		}},
		{"ready: {command: [pg_isready, -p, '${PORT}']}\n", ReadyCommand, func(r Ready) bool {
			return slices.Equal(r.Command, []string{"pg_isready", "-p", "${PORT}"})
		}},
		{"ready: {log: 'ready to accept connections'}\n", ReadyLog, func(r Ready) bool {
			return r.Log.MatchString("LOG:  database system is ready to accept connections")
		}},
		{"ready: {tcp: {send: \"PING\\r\\n\", expect: \"+PONG\"}}\n", ReadyTCP, func(r Ready) bool {
			return r.TCP == TCPCheck{Send: "PING\r\n", Expect: "+PONG"}
		}},
		{"ready: {tcp: {expect: SSH-2.0-}}\n", ReadyTCP, func(r Ready) bool { return r.TCP == TCPCheck{Expect: "SSH-2.0-"} }},
	}
	for _, c := range cases {
		s, err := Parse(writeFile(t, dir, "app.yaml", minimal+c.yaml), []byte(minimal+c.yaml))
		if err != nil {
			t.Errorf("%q: %v", c.yaml, err)
			continue
		}
		if got := s.Ready.Kind(); got != c.kind {
			t.Errorf("%q: kind %q, want %q", c.yaml, got, c.kind)
		}
		if !c.check(s.Ready) {
			t.Errorf("%q: parsed as %+v", c.yaml, s.Ready)
		}
	}
}

func TestParseReadyErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		yaml, field, want string
	}{
		{"ready: {htp: /x}\n", "ready.htp", "unknown key (did you mean http? known keys: http, notify, command, log, tcp)"},
		{"ready: {http: /x, tcp: {expect: x}}\n", "ready", "expected one of http, notify, command, log, tcp, got http and tcp"},
		{"ready: {notify: true, log: x}\n", "ready", "got notify and log"},
		{"ready: {notify: yes please}\n", "ready.notify", "expected true or false"},
		{"ready: {command: ''}\n", "ready.command", "expected a command, got an empty string"},
		{"ready: {command: []}\n", "ready.command", "got an empty list"},
		{"ready: {command: 7}\n", "ready.command", "expected a command (a list of words or a string), got 7"},
		{"ready: {log: 'ready ('}\n", "ready.log", "expected a regular expression (Go's syntax), got \"ready (\": error parsing regexp: missing closing )"},
		{"ready: {log: ''}\n", "ready.log", "expected a regular expression of 1 to 1024 bytes, got 0 bytes"},
		{"ready: {log: '" + strings.Repeat("a", 1025) + "'}\n", "ready.log", "got 1025 bytes"},
		{"ready: {tcp: {send: PING}}\n", "ready.tcp.expect", "required key is missing"},
		{"ready: {tcp: {expect: ''}}\n", "ready.tcp.expect", "expected 1 to 1024 bytes, got 0"},
		{"ready: {tcp: {send: 5, expect: x}}\n", "ready.tcp.send", "expected the bytes to send"},
		{"ready: {tcp: {send: x, expect: x, recv: y}}\n", "ready.tcp.recv", "unknown key (known keys: send, expect)"},
		{"ready: {tcp: '+PONG'}\n", "ready.tcp", "expected a mapping with keys send, expect"},
		{"ready: {tcp: {send: '" + strings.Repeat("a", 4097) + "', expect: x}}\n", "ready.tcp.send", "expected at most 4096 bytes, got 4097"},
	}
	for _, c := range cases {
		p := writeFile(t, dir, "app.yaml", minimal+c.yaml)
		_, err := Parse(p, []byte(minimal+c.yaml))
		requireFieldError(t, err, p, c.field, c.want)
	}
}

func TestParseReadyKindsNeedTheirDriver(t *testing.T) {
	dir := t.TempDir()
	docker := "listen: ':1'\ndriver: docker\ncontainer: c\nupstream: 127.0.0.1:2\n"
	command := "listen: ':1'\ndriver: command\nstart: s\nstop: s\nupstream: 127.0.0.1:2\n"
	for _, c := range []struct{ yaml, field, want string }{
		{docker + "ready: {notify: true}\n", "ready.notify", "not with driver: docker: only a program the exec driver starts gets a NOTIFY_SOCKET"},
		{command + "ready: {notify: true}\n", "ready.notify", "not with driver: command"},
		{docker + "ready: {log: ready}\n", "ready.log", "not with driver: docker: a container's output does not pass through DynaPM"},
	} {
		p := writeFile(t, dir, "app.yaml", c.yaml)
		_, err := Parse(p, []byte(c.yaml))
		requireFieldError(t, err, p, c.field, c.want)
	}
	for _, ok := range []string{
		command + "ready: {log: ready}\n",
		docker + "ready: {command: 'true'}\n",
		docker + "ready: {tcp: {expect: x}}\n",
	} {
		if _, err := Parse(writeFile(t, dir, "app.yaml", ok), []byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

func TestReadyEqual(t *testing.T) {
	dir := t.TempDir()
	parse := func(y string) *Spec {
		s, err := Parse(writeFile(t, dir, "app.yaml", minimal+y), []byte(minimal+y))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	variants := []string{
		"",
		"ready: {http: /a}\n",
		"ready: {notify: true}\n",
		"ready: {command: 'true'}\n",
		"ready: {command: 'false'}\n",
		"ready: {log: a}\n",
		"ready: {log: b}\n",
		"ready: {tcp: {expect: a}}\n",
		"ready: {tcp: {send: x, expect: a}}\n",
	}
	for i, a := range variants {
		for j, b := range variants {
			if got := parse(a).Equal(parse(b)); got != (i == j) {
				t.Errorf("Equal(%q, %q) = %v", a, b, got)
			}
		}
	}
}
