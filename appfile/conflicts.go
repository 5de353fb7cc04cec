package appfile

import (
	"fmt"
)

// CheckConflicts finds what no single file can show: two apps with the same
// name, two apps on one listen address that cannot be told apart, and
// upstreams that clash with another app, needs naming an app not in specs
// and needs that form a cycle. Earlier specs win: every error is
// a *FieldError whose File is the later spec's File, and that spec is the
// one to leave out. Hot reload can therefore list the apps in force first
// and the changed ones after, so that an edit never displaces a running app.
func CheckConflicts(specs []*Spec) []error {
	errs, _ := conflicts(specs)
	return errs
}

// listener is one accepted app's claim on one listen address.
type listener struct {
	spec  *Spec
	field string
	text  string
	addr  hostPort
}

// upstreamClaim is one accepted app's fixed upstream address.
type upstreamClaim struct {
	spec *Spec
	addr hostPort
}

// conflicts returns the errors and the indexes of the specs they reject.
func conflicts(specs []*Spec) ([]error, map[int]bool) {
	var errs []error
	rejected := map[int]bool{}
	names := map[string]*Spec{}
	byPort := map[uint16][]listener{} // accepted apps' listen addresses
	var upstreams []upstreamClaim     // accepted apps' fixed upstreams

	for i, s := range specs {
		var mine []error
		fail := func(field, format string, args ...any) {
			mine = append(mine, &FieldError{File: s.File, Field: field, Msg: fmt.Sprintf(format, args...)})
		}
		if other, ok := names[s.Name]; ok {
			fail("", "app name %q is also used by %s", s.Name, other.File)
		}
		var claims []listener
		for j, text := range s.Listen {
			a, err := parseAddr(text)
			if err != nil {
				continue // Parse reported it
			}
			l := listener{spec: s, field: index("listen", j), text: text, addr: a}
			for _, o := range byPort[a.port] {
				if msg := clash(l, o); msg != "" {
					fail(l.field, "%s", msg)
				}
			}
			claims = append(claims, l)
		}
		var ups []hostPort
		if s.Upstream != "" {
			ups = s.upstreamAddrs()
		}
		for _, up := range ups {
			for _, u := range upstreams {
				if u.addr.overlaps(up) {
					fail("upstream", "%s is also the upstream of %s: two programs cannot listen on one address", Quote(s.Upstream), u.spec.File)
				}
			}
			for _, o := range byPort[up.port] {
				if o.addr.overlaps(up) {
					fail("upstream", "%s is also %s %s of %s: DynaPM would proxy this app into that one", Quote(s.Upstream), o.field, Quote(o.text), o.spec.File)
				}
			}
		}
		// This app's listen addresses must not be another app's upstream.
		for _, l := range claims {
			for _, u := range upstreams {
				if l.addr.overlaps(u.addr) {
					fail(l.field, "%s is also the upstream of %s: DynaPM would proxy that app into this one", Quote(l.text), u.spec.File)
				}
			}
		}
		if len(mine) > 0 {
			errs = append(errs, mine...)
			rejected[i] = true
			continue
		}
		names[s.Name] = s
		for _, l := range claims {
			byPort[l.addr.port] = append(byPort[l.addr.port], l)
		}
		for _, up := range ups {
			upstreams = append(upstreams, upstreamClaim{spec: s, addr: up})
		}
	}
	errs = append(errs, needsErrors(specs, rejected)...)
	return errs, rejected
}

// clash explains why l cannot share a port with the accepted o, or returns "".
func clash(l, o listener) string {
	if !l.addr.overlaps(o.addr) {
		return ""
	}
	if msg := handoffClash(l, o); msg != "" {
		return msg
	}
	if l.addr != o.addr {
		return fmt.Sprintf("%s overlaps %s %s of %s: apps share an address only by naming the same address (with match)", Quote(l.text), o.field, Quote(o.text), o.spec.File)
	}
	lm, om := l.spec.Match, o.spec.Match
	if !lm.set() && !om.set() {
		return fmt.Sprintf("%s is also %s of %s, and neither app has match: at most one app per address may go without match", Quote(l.text), o.field, o.spec.File)
	}
	if n, ok := common(lm.SNI, om.SNI); ok {
		return fmt.Sprintf("%s is shared with %s, which also matches sni %s", Quote(l.text), o.spec.File, Quote(n))
	}
	if n, ok := common(lm.Host, om.Host); ok {
		return fmt.Sprintf("%s is shared with %s, which also matches host %s", Quote(l.text), o.spec.File, Quote(n))
	}
	return ""
}

// common returns the first name of a that b holds too, in time linear in
// both: each list may hold thousands of names.
func common(a, b []string) (string, bool) {
	if len(a) == 0 || len(b) == 0 {
		return "", false
	}
	in := make(map[string]bool, len(b))
	for _, n := range b {
		in[n] = true
	}
	for _, n := range a {
		if in[n] {
			return n, true
		}
	}
	return "", false
}

func (m Match) set() bool { return len(m.SNI) > 0 || len(m.Host) > 0 }
