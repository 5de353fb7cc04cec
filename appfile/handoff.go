package appfile

import (
	"fmt"
	"strings"
)

// The handoff: key: who accepts the app's connections. With proxy DynaPM
// accepts and splices; with socket and inetd the program gets the kernel's
// sockets and DynaPM is off the data path.

// Handoff values.
const (
	// HandoffProxy: DynaPM accepts, holds while the app starts, splices.
	HandoffProxy = "proxy"
	// HandoffSocket: the program gets the listening sockets (LISTEN_FDS)
	// and accepts from them itself, as under systemd's socket activation.
	HandoffSocket = "socket"
	// HandoffInetd: DynaPM accepts, and runs one program per connection
	// with the connection as its stdin, stdout and fd 3 (systemd's
	// Accept=yes).
	HandoffInetd = "inetd"
)

// DefaultInetdMax is how many inetd programs run at once when scale.max
// is not given: systemd's MaxConnections default.
const DefaultInetdMax = 64

var handoffNames = []string{HandoffProxy, HandoffSocket, HandoffInetd}

// HandsOff reports whether the program, not DynaPM, gets the app's
// connections (handoff socket or inetd).
func (s *Spec) HandsOff() bool {
	return s.Handoff == HandoffSocket || s.Handoff == HandoffInetd
}

// InetdMax is the most programs an inetd app runs at once.
func (s *Spec) InetdMax() int {
	if s.Scale.Max > 0 {
		return s.Scale.Max
	}
	return DefaultInetdMax
}

// handoff decodes the handoff key.
func (d *decoder) handoff(s *Spec, key string, v any) {
	if h, ok := choice(d, key, v, "one of "+strings.Join(handoffNames, ", "), handoffNames...); ok {
		s.Handoff = h
	}
}

// handoffChecks refuses the keys that have no meaning once the program
// holds the sockets: DynaPM never sees a byte, so nothing can be sent
// ahead of them or matched in them, and there is no upstream to probe.
func (d *decoder) handoffChecks(s *Spec, raw map[string]any) {
	if !s.HandsOff() {
		return
	}
	h := "handoff: " + s.Handoff
	if s.Driver != DriverExec {
		d.errorf("handoff", "%s passes sockets to a program DynaPM starts: it needs driver exec, got driver %s", h, s.Driver)
	}
	refuse := func(key, why string) {
		if v, ok := raw[key]; ok && v != nil {
			d.errorf(key, "not used with %s: %s", h, why)
		}
	}
	refuse("upstream", "the program accepts on the listen addresses itself")
	refuse("proxy_protocol", "DynaPM does not see the connection's bytes, so it cannot send a header before them")
	refuse("match", "the program gets the whole listening socket, which cannot be shared by name")
	refuse("max_pending", "connections wait in the kernel's listen backlog, not in DynaPM")
	refuse("unavailable_reply", "DynaPM does not accept the app's connections")
	switch s.Ready.Kind() {
	case ReadyHTTP, ReadyTCP:
		d.errorf(join("ready", s.Ready.Kind()), "not used with %s: there is no upstream to probe (use notify, log or command)", h)
	}
	if sc, ok := raw["scale"].(map[string]any); ok {
		for _, k := range []string{"min", "target_connections"} {
			if _, ok := sc[k]; ok {
				d.errorf(join("scale", k), "not used with %s: only scale.max is", h)
			}
		}
	}
	if s.Handoff == HandoffSocket {
		if s.Scale.Max > 1 {
			d.errorf("scale", "%s runs one program, which holds the sockets: scale.max must be 1, got %d", h, s.Scale.Max)
		}
		return
	}
	refuse("idle_timeout", "each program serves one connection and ends with it")
	refuse("wake", "a program runs only for a connection")
	if s.Mode != OnDemand {
		d.errorf("mode", "%s runs a program per connection: expected on-demand, got %s", h, s.Mode)
	}
	if s.Ready.Kind() != ReadyConnect {
		d.errorf("ready", "not used with %s: the connection is the program's from the start", h)
	}
}

// handoffClash explains why two apps cannot share an address because one
// hands its sockets off, or returns "".
func handoffClash(l, o listener) string {
	for _, s := range []*Spec{l.spec, o.spec} {
		if s.HandsOff() {
			return fmt.Sprintf("%s is also %s of %s: an app with handoff: %s gets the listening socket, so the address is its alone",
				Quote(l.text), o.field, o.spec.File, s.Handoff)
		}
	}
	return ""
}
