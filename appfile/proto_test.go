package appfile

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestParseProtocols(t *testing.T) {
	type tc = loadCase
	cases := []tc{
		{name: "udp and tcp on one port", yaml: "listen: ['127.0.0.1:5353/udp', '127.0.0.1:5353/tcp', '127.0.0.1:5354']\ncommand: x\n",
			check: func(t *testing.T, s *Spec) {
				if !slices.Equal(s.Listen, []string{"127.0.0.1:5353/udp", "127.0.0.1:5353", "127.0.0.1:5354"}) {
					t.Errorf("Listen = %q", s.Listen)
				}
				if tcp, udp := s.Protocols(); !tcp || !udp || s.UDPOnly() {
					t.Errorf("Protocols = %v, %v; UDPOnly %v", tcp, udp, s.UDPOnly())
				}
				if s.UDPFlowTimeout != DefaultUDPFlowTimeout {
					t.Errorf("UDPFlowTimeout = %v", s.UDPFlowTimeout)
				}
			}},
		{name: "udp only, upstream suffix", yaml: "listen: '127.0.0.1:53/UDP'\nupstream: '127.0.0.1:5353/udp'\ncommand: x\nudp_flow_timeout: 5s\n",
			check: func(t *testing.T, s *Spec) {
				if !slices.Equal(s.Listen, []string{"127.0.0.1:53/udp"}) || s.Upstream != "127.0.0.1:5353" {
					t.Errorf("Listen = %q, Upstream = %q", s.Listen, s.Upstream)
				}
				if !s.UDPOnly() || s.UDPFlowTimeout != 5*time.Second {
					t.Errorf("UDPOnly %v, UDPFlowTimeout %v", s.UDPOnly(), s.UDPFlowTimeout)
				}
			}},
		{name: "upstream on its own udp listen", yaml: "listen: '127.0.0.1:53/udp'\nupstream: '127.0.0.1:53/udp'\ncommand: x\n",
			field: "upstream", want: `"127.0.0.1:53" is also listen[0] "127.0.0.1:53/udp": DynaPM would proxy the app to itself`},
		{name: "upstream tcp port equal to udp listen", yaml: "listen: '127.0.0.1:53/udp'\nupstream: '127.0.0.1:5353'\ncommand: x\n",
			check: func(t *testing.T, s *Spec) {}},
		{name: "bad suffix", yaml: "listen: '127.0.0.1:53/sctp'\ncommand: x\n", field: "listen",
			want: `expected /tcp or /udp after the port, got "/sctp" in "127.0.0.1:53/sctp"`},
		{name: "bad upstream suffix", yaml: "listen: ':53/udp'\nupstream: '127.0.0.1:5353/quic'\ncommand: x\n", field: "upstream",
			want: `expected /tcp or /udp after the port`},
		{name: "upstream suffix disagrees", yaml: "listen: ['127.0.0.1:53/udp', '127.0.0.1:53']\nupstream: '127.0.0.1:5353/udp'\ncommand: x\n",
			field: "upstream", want: `"127.0.0.1:5353/udp" is UDP, but listen[1] "127.0.0.1:53" is TCP`},
		{name: "same udp twice", yaml: "listen: ['127.0.0.1:53/udp', ':53/udp']\ncommand: x\n", field: "listen[1]",
			want: `":53/udp" overlaps "127.0.0.1:53/udp" (listen[0])`},
		{name: "flow timeout without udp", yaml: "listen: '127.0.0.1:53'\ncommand: x\nudp_flow_timeout: 10s\n", field: "udp_flow_timeout",
			want: "the app has no UDP listen address"},
		{name: "match on udp", yaml: "listen: '127.0.0.1:53/udp'\ncommand: x\nmatch: {sni: [a.example.com]}\n", field: "match",
			want: "expected no match on an app with a UDP listen address"},
		{name: "proxy v1 on udp", yaml: "listen: ['127.0.0.1:53', '127.0.0.1:53/udp']\ncommand: x\nproxy_protocol: v1\n", field: "proxy_protocol",
			want: "PROXY protocol v1 has no form for datagrams"},
		{name: "flow timeout zero", yaml: "listen: '127.0.0.1:53/udp'\ncommand: x\nudp_flow_timeout: 0s\n", field: "udp_flow_timeout",
			want: "expected a duration greater than 0"},
	}
	runLoadCases(t, cases)
}

// loadCase is an app file that Load accepts (check looks at the Spec) or
// refuses with an error naming field and saying want.
type loadCase struct {
	name  string
	yaml  string
	check func(t *testing.T, s *Spec)
	field string
	want  string
}

func runLoadCases(t *testing.T, cases []loadCase) {
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, dir, "app.yaml", c.yaml)
			s, err := Load(p)
			if c.check != nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				c.check(t, s)
				return
			}
			requireFieldError(t, err, p, c.field, c.want)
		})
	}
}

func TestConflictsKeepProtocolsApart(t *testing.T) {
	dir := t.TempDir()
	load := func(name, yaml string) *Spec {
		t.Helper()
		s, err := Parse(filepath.Join(dir, name+".yaml"), []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tcp := load("tcp", "listen: '127.0.0.1:53'\nupstream: '127.0.0.1:5353'\ncommand: x\n")
	udp := load("udp", "listen: '127.0.0.1:53/udp'\nupstream: '127.0.0.1:5353/udp'\ncommand: x\n")
	if errs := CheckConflicts([]*Spec{tcp, udp}); len(errs) != 0 {
		t.Fatalf("a TCP and a UDP app on one port and upstream port clash: %v", errs)
	}
	both := load("both", "listen: '127.0.0.1:54/udp'\nupstream: '127.0.0.1:5353'\ncommand: x\n")
	errs := CheckConflicts([]*Spec{tcp, udp, both})
	if len(errs) != 1 {
		t.Fatalf("want one conflict for both's UDP upstream, got %v", errs)
	}
	requireFieldError(t, errs[0], both.File, "upstream", "is also the upstream of "+udp.File)
	into := load("into", "listen: '127.0.0.1:55/udp'\nupstream: '127.0.0.1:53'\ncommand: x\n")
	errs = CheckConflicts([]*Spec{tcp, udp, into})
	if len(errs) != 1 {
		t.Fatalf("want one conflict for into's upstream on udp's listen, got %v", errs)
	}
	requireFieldError(t, errs[0], into.File, "upstream", "DynaPM would proxy this app into that one")
	if got := ListenKey("0.0.0.0:53/udp"); got != "*:53/udp" {
		t.Errorf("ListenKey = %q", got)
	}
}

func TestProtocolChangeNeedsRestart(t *testing.T) {
	dir := t.TempDir()
	parse := func(yaml string) *Spec {
		t.Helper()
		s, err := Parse(filepath.Join(dir, "dns.yaml"), []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tcp := parse("listen: '127.0.0.1:53'\ncommand: x\n")
	both := parse("listen: ['127.0.0.1:53', '127.0.0.1:53/udp']\ncommand: x\n")
	moved := parse("listen: ['127.0.0.1:54', '127.0.0.1:54/udp']\ncommand: x\n")
	longer := parse("listen: ['127.0.0.1:54', '127.0.0.1:54/udp']\ncommand: x\nudp_flow_timeout: 2m\n")
	if !both.NeedsRestart(tcp) {
		t.Error("a UDP listen added: the program must also serve UDP on its port, yet no restart")
	}
	if moved.NeedsRestart(both) || moved.Equal(both) {
		t.Errorf("listen moved within the same protocols: restart %v, equal %v; want no restart, not equal", moved.NeedsRestart(both), moved.Equal(both))
	}
	if longer.NeedsRestart(moved) || longer.Equal(moved) {
		t.Error("udp_flow_timeout changed: want a change without a restart")
	}
}
