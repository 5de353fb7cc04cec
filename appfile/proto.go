package appfile

import (
	"fmt"
	"strings"
	"time"

	"github.com/dynapm/dynapm/internal/unixaddr"
)

// Transport protocols of listen and upstream addresses: "host:port" and
// "host:port/tcp" are TCP, "host:port/udp" is UDP.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// DefaultUDPFlowTimeout ends a UDP flow that has carried no datagram either
// way for this long, as conntrack's and nginx's stream timeouts do.
const DefaultUDPFlowTimeout = 60 * time.Second

// SplitProto splits an address of Spec.Listen into host:port and its
// protocol, ProtoTCP when it has no suffix.
// A "unix:/path" address is a stream socket, ProtoTCP here: its program
// and DynaPM treat it as they treat TCP.
func SplitProto(s string) (addr, proto string) {
	if a, ok := strings.CutSuffix(s, "/"+ProtoUDP); ok {
		return a, ProtoUDP
	}
	return strings.TrimSuffix(s, "/"+ProtoTCP), ProtoTCP
}

// parseAddr parses host:port with an optional /tcp or /udp suffix.
func parseAddr(s string) (hostPort, error) {
	if p, ok := strings.CutPrefix(s, unixaddr.Prefix); ok {
		if err := checkSocketPath(p); err != nil {
			return hostPort{}, err
		}
		return hostPort{path: p, proto: ProtoTCP}, nil
	}
	text, proto := s, ProtoTCP
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		text, proto = s[:i], strings.ToLower(s[i+1:])
		if proto != ProtoTCP && proto != ProtoUDP {
			return hostPort{}, fmt.Errorf("expected /tcp or /udp after the port, got %s in %s", Quote(s[i:]), Quote(s))
		}
	}
	a, err := parseHostPort(text)
	if err != nil {
		return hostPort{}, err
	}
	a.proto = proto
	return a, nil
}

// canonicalListen is a listen address as Spec.Listen keeps it: as written,
// but for a /tcp suffix left out and a lowercase /udp, so that two files
// naming one socket spell it alike.
func canonicalListen(s string) string {
	a, err := parseAddr(s)
	if err != nil {
		return s
	}
	text := s
	if a.path != "" {
		return text
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		text = s[:i]
	}
	if a.proto == ProtoUDP {
		return text + "/" + ProtoUDP
	}
	return text
}

// Protocols reports which transport protocols the app listens on: its
// program serves each of them on its upstream port.
func (s *Spec) Protocols() (tcp, udp bool) {
	for _, l := range s.Listen {
		if _, p := SplitProto(l); p == ProtoUDP {
			udp = true
		} else {
			tcp = true
		}
	}
	return tcp, udp
}

// UDPOnly reports whether every listen address of the app is UDP: its
// program is ready once it has bound its upstream port, since there is no
// connection to probe.
func (s *Spec) UDPOnly() bool {
	tcp, udp := s.Protocols()
	return udp && !tcp
}

// upstreamAddrs is every socket the program holds at a fixed upstream: the
// upstream's host and port in each protocol the app listens on.
func (s *Spec) upstreamAddrs() []hostPort {
	if p := s.UnixUpstream(); p != "" {
		return []hostPort{{path: p, proto: ProtoTCP}}
	}
	a, err := parseHostPort(s.Upstream)
	if err != nil {
		return nil
	}
	tcp, udp := s.Protocols()
	var out []hostPort
	if tcp {
		a.proto = ProtoTCP
		out = append(out, a)
	}
	if udp {
		a.proto = ProtoUDP
		out = append(out, a)
	}
	return out
}

// checkUpstreamProto checks an upstream's suffix against the app's listen
// addresses: the program serves its upstream in every protocol the app
// listens on, so a suffix may only repeat what they all say.
func (d *decoder) checkUpstreamProto(s *Spec) {
	if d.upstreamProto == "" {
		return
	}
	for i, l := range s.Listen {
		if _, p := SplitProto(l); p != d.upstreamProto {
			d.errorf("upstream", "%s is %s, but listen[%d] %s is %s: the program serves its upstream in every protocol the app listens on; leave the suffix out",
				Quote(s.Upstream+"/"+d.upstreamProto), strings.ToUpper(d.upstreamProto), i, Quote(l), strings.ToUpper(p))
			return
		}
	}
}

// udpFlowTimeout reads udp_flow_timeout, which only an app with a UDP
// listen address uses.
func (d *decoder) udpFlowTimeout(s *Spec, key string, v any) {
	t, ok := d.duration(key, v, false)
	if !ok {
		return
	}
	s.UDPFlowTimeout = t
	d.flowTimeoutSet = true
}

// udpChecks refuses udp_flow_timeout on an app with no UDP listen
// address, and what UDP cannot do: datagrams carry no TLS SNI or HTTP Host
// to share an address by.
func (d *decoder) udpChecks(s *Spec) {
	_, udp := s.Protocols()
	if !udp {
		if d.flowTimeoutSet {
			d.errorf("udp_flow_timeout", "the app has no UDP listen address (such as \"127.0.0.1:5353/udp\"); remove the key or add one")
		}
		return
	}
	if s.Match.set() {
		d.errorf("match", "expected no match on an app with a UDP listen address: datagrams carry no TLS server name or HTTP Host to share an address by")
	}
	if s.ProxyProtocol == "v1" {
		d.errorf("proxy_protocol", "expected v2 on an app with a UDP listen address: PROXY protocol v1 has no form for datagrams")
	}
}
