package appfile

import (
	"maps"
	"slices"
)

// Equal reports whether two specs say the same thing, field by field.
func (s *Spec) Equal(o *Spec) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.Name == o.Name && s.File == o.File &&
		slices.Equal(s.Listen, o.Listen) &&
		s.Mode == o.Mode &&
		s.IdleTimeout == o.IdleTimeout &&
		s.StartTimeout == o.StartTimeout &&
		s.StopSignal == o.StopSignal &&
		s.StopTimeout == o.StopTimeout &&
		s.Ready.Equal(o.Ready) &&
		s.MaxPending == o.MaxPending &&
		s.UDPFlowTimeout == o.UDPFlowTimeout &&
		s.Scale == o.Scale &&
		s.MemoryPriority == o.MemoryPriority && s.MemoryMax == o.MemoryMax &&
		slices.Equal(s.Match.SNI, o.Match.SNI) &&
		slices.Equal(s.Match.Host, o.Match.Host) &&
		slices.Equal(s.Wake, o.Wake) &&
		slices.EqualFunc(s.Jobs, o.Jobs, func(a, b Job) bool {
			return a.Cron == b.Cron && slices.Equal(a.Command, b.Command) &&
				a.Timeout == b.Timeout && a.NeedsApp == b.NeedsApp
		}) &&
		s.UnavailableReply == o.UnavailableReply &&
		!s.NeedsRestart(o)
}

// NeedsRestart reports whether a running program started from old must be
// restarted to match s: what it runs, where, with which environment, on
// which upstream, or what bytes it receives (proxy_protocol), and how it
// runs (driver and the driver's keys). Everything else (listen addresses,
// timeouts, stop_signal, match, schedules) takes effect without a restart. A nil old always needs one.
func (s *Spec) NeedsRestart(old *Spec) bool {
	if old == nil {
		return true
	}
	return !slices.Equal(s.Command, old.Command) ||
		!maps.Equal(s.Env, old.Env) ||
		s.Dir != old.Dir ||
		s.Upstream != old.Upstream ||
		s.protocolsChanged(old) ||
		s.ProxyProtocol != old.ProxyProtocol ||
		s.Driver != old.Driver ||
		!slices.Equal(s.Containers, old.Containers) ||
		s.Service != old.Service ||
		s.Replicas != old.Replicas ||
		!slices.Equal(s.StartCommand, old.StartCommand) ||
		!slices.Equal(s.StopCommand, old.StopCommand) ||
		!slices.Equal(s.CheckCommand, old.CheckCommand) ||
		s.User != old.User || s.Group != old.Group ||
		s.Limits != old.Limits || s.Umask != old.Umask
}

// protocolsChanged: the program must serve its upstream in another set of
// protocols ($PORT is picked free for them, readiness differs).
func (s *Spec) protocolsChanged(old *Spec) bool {
	t, u := s.Protocols()
	ot, ou := old.Protocols()
	return t != ot || u != ou
}
