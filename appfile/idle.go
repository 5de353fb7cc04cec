package appfile

import (
	"net/netip"
	"strings"
)

// The keys that say when an app is idle, what idleness does to it and who
// may wake it: idle_when, client_idle_timeout, idle_action, freeze_timeout
// and wake_from.

// IdleWhen says what makes an app idle.
type IdleWhen string

// The values of idle_when.
const (
	// IdleNoConnections: idle once no connection is open (the default).
	IdleNoConnections IdleWhen = "connections"
	// IdleNoTraffic: idle once no byte moved either way, whatever is open.
	IdleNoTraffic IdleWhen = "traffic"
)

// IdleAction says what idleness does to an app.
type IdleAction string

// The values of idle_action.
const (
	// IdleStop stops the app (the default).
	IdleStop IdleAction = "stop"
	// IdleFreeze suspends every process of the app, which keeps its
	// memory and resumes at the next connection.
	IdleFreeze IdleAction = "freeze"
)

// idleField decodes one of the idle keys into s.
func (d *decoder) idleField(s *Spec, key string, v any) {
	switch key {
	case "idle_when":
		if w, ok := choice(d, key, v, "connections or traffic", IdleNoConnections, IdleNoTraffic); ok {
			s.IdleWhen = w
		}
	case "client_idle_timeout":
		s.ClientIdleTimeout, _ = d.duration(key, v, true)
	case "idle_action":
		if a, ok := choice(d, key, v, "stop or freeze", IdleStop, IdleFreeze); ok {
			s.IdleAction = a
		}
	case "freeze_timeout":
		s.FreezeTimeout, _ = d.duration(key, v, true)
	case "wake_from":
		var prefixes []netip.Prefix
		if _, ok := d.stringList(key, v, "a CIDR such as 10.0.0.0/8 or an IP address", func(field, str string) bool {
			p, ok := d.prefix(field, str)
			if ok {
				prefixes = append(prefixes, p)
			}
			return ok
		}); ok {
			s.WakeFrom = prefixes
		}
	}
}

// prefix parses one wake_from entry: a CIDR, or an IP address alone for
// that address only. IPv4 entries also match IPv4-mapped IPv6 sources (a
// dual-stack listener), which l4 unmaps before it matches.
func (d *decoder) prefix(field, str string) (netip.Prefix, bool) {
	str = strings.TrimSpace(str)
	var p netip.Prefix
	var err error
	if strings.Contains(str, "/") {
		p, err = netip.ParsePrefix(str)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(str); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil || p.Addr().Zone() != "" {
		d.errorf(field, "expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or an IP address, got %s", Quote(str))
		return netip.Prefix{}, false
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked(), true
}

// idleChecks refuses idle_action: freeze where the driver cannot freeze.
func (d *decoder) idleChecks(s *Spec) {
	if s.IdleAction == IdleFreeze && s.Driver != DriverExec && s.Driver != DriverDocker {
		d.errorf("idle_action", "freeze needs driver exec or docker (driver %s cannot suspend its app); use stop", s.Driver)
	}
	if s.FreezeTimeout > 0 && s.IdleAction != IdleFreeze {
		d.errorf("freeze_timeout", "applies to idle_action: freeze only")
	}
}

// idleDefaults are the defaults of the idle keys, for Parse.
func idleDefaults(s *Spec) {
	s.IdleWhen = IdleNoConnections
	s.IdleAction = IdleStop
}
