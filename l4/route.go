package l4

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// route picks c's route among rs. On an address shared by name (rs.peek)
// it peeks at the client's first bytes for the name (see peek) and matches
// it against the routes in force by then; otherwise it takes the default
// route and reads nothing. ok is false, with c dropped and the reason
// logged, when the client names no app in time or nothing matches. p holds
// the bytes peeked; the caller releases it.
func (s *Server) route(c *proxyConn, l *listener, rs *routeSet) (r Route, p peeked, ok bool) {
	idx := rs.def
	if rs.peek {
		if !s.goClient(c) {
			s.drop(c, nil)
			return r, p, false
		}
		var err error
		if p, err = s.peek(c.client); err != nil {
			if log := s.logger(); log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("closing connection that named no app in time", slog.String("listen", l.addr),
					slog.String("client", c.client.RemoteAddr().String()), slog.Any("err", err))
			}
			s.drop(c, nil)
			return r, p, false
		}
		// The routes may have been reloaded while the client was sending.
		rs = l.routes.Load()
		idx = rs.match(p.proto, p.name)
	}
	if idx < 0 {
		if s.goClient(c) {
			l.logNoMatch(c, p)
		}
		s.releasePeek(&p)
		s.drop(c, nil)
		return r, p, false
	}
	return rs.routes[idx], p, true
}

// routeSet is the routes of one listen address, with the name tables built
// once when the routes are applied, so that a connection only looks names up.
// It is immutable once built and shared through listener.routes.
type routeSet struct {
	routes []Route
	// def is the index of the default route (no SNI, no Host), or -1.
	def int
	// peek is true when some route has SNI or Host: connections are then
	// peeked to find a name. False keeps the plain path: straight to Wake.
	peek bool
	sni  nameTable
	host nameTable
}

// nameTable maps host names to route indexes.
//
// Wildcards: "*.example.com" matches every name that ends in ".example.com",
// however many labels come before (a.example.com and a.b.example.com), but
// not example.com itself. The most specific match wins: an exact name first,
// then the wildcard with the longest suffix, so "*.b.example.com" beats
// "*.example.com" for x.b.example.com. (Certificates' wildcards cover one
// label only; routing by the longest suffix lets one app take a whole
// subtree while another carves out part of it.)
type nameTable struct {
	exact map[string]int
	wild  map[string]int // keyed by the suffix after "*."
}

// add records name for route i. The first route to claim a name keeps it;
// appfile rejects a second claim before it gets here.
func (t *nameTable) add(name string, i int) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	m := &t.exact
	if suffix, ok := strings.CutPrefix(name, "*."); ok {
		m, name = &t.wild, suffix
	}
	if *m == nil {
		*m = make(map[string]int)
	}
	if _, taken := (*m)[name]; !taken {
		(*m)[name] = i
	}
}

// lookup returns the route index for name (lowercase, no trailing dot), or
// -1. It allocates nothing: map lookups by substring do not copy.
func (t *nameTable) lookup(name string) int {
	if name == "" {
		return -1
	}
	if i, ok := t.exact[name]; ok {
		return i
	}
	if t.wild == nil {
		return -1
	}
	// Suffixes from the longest: the first hit is the most specific.
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			if r, ok := t.wild[name[i+1:]]; ok {
				return r
			}
		}
	}
	return -1
}

// newRouteSet builds the route set of one address. The first route without
// SNI and Host is the default; others without a match are unreachable
// (appfile allows one per address).
func newRouteSet(routes []Route) *routeSet {
	rs := &routeSet{routes: append([]Route(nil), routes...), def: -1}
	for i, r := range rs.routes {
		if len(r.SNI) == 0 && len(r.Host) == 0 {
			if rs.def < 0 {
				rs.def = i
			}
			continue
		}
		rs.peek = true
		for _, n := range r.SNI {
			rs.sni.add(n, i)
		}
		for _, n := range r.Host {
			rs.host.add(n, i)
		}
	}
	return rs
}

// match picks the route for a peeked connection: by name in the table of
// its protocol, else the default. -1 means no route: close the connection.
func (rs *routeSet) match(proto peekProto, name string) int {
	i := -1
	switch proto {
	case protoTLS:
		i = rs.sni.lookup(name)
	case protoHTTP:
		i = rs.host.lookup(name)
	}
	if i < 0 {
		i = rs.def
	}
	return i
}

// logNoMatch reports a connection that named no app of the address, which
// has no default route, at most once per ErrorLogInterval per listener (a
// scanner trying names must not flood the log); the count of the ones left
// out goes with the next report.
func (l *listener) logNoMatch(c *proxyConn, p peeked) {
	every := durationOr(l.s.ErrorLogInterval, DefaultErrorLogInterval)
	now := time.Now().UnixNano()
	last := l.noMatchLast.Load()
	if now-last < int64(every) || !l.noMatchLast.CompareAndSwap(last, now) {
		l.noMatchSuppressed.Add(1)
		return
	}
	attrs := []any{slog.String("listen", l.addr), slog.String("client", c.client.RemoteAddr().String()),
		slog.Int64("suppressed", l.noMatchSuppressed.Swap(0))}
	if p.proto != 0 {
		attrs = append(attrs, slog.String(p.proto.String(), p.name))
	}
	l.s.logger().Info("no app for this name, closing connection", attrs...)
}
