package appfile

import (
	"maps"
	"slices"
)

// specKey compares one key of the app file in two specs. restart: a
// running program must be restarted for a change of it to take effect.
type specKey struct {
	key     string
	restart bool
	same    func(a, b *Spec) bool
}

// specKeys are the app file's keys, in its reference's order. Equal,
// NeedsRestart and Changed all read this one table, so that a new key
// cannot be compared by one and forgotten by another.
var specKeys = []specKey{
	{"listen", false, func(a, b *Spec) bool { return slices.Equal(a.Listen, b.Listen) }},
	{"upstream", true, func(a, b *Spec) bool { return a.Upstream == b.Upstream }},
	{"command", true, func(a, b *Spec) bool { return slices.Equal(a.Command, b.Command) }},
	{"dir", true, func(a, b *Spec) bool { return a.Dir == b.Dir }},
	{"env", true, func(a, b *Spec) bool { return maps.Equal(a.Env, b.Env) }},
	{"mode", false, func(a, b *Spec) bool { return a.Mode == b.Mode }},
	{"idle_timeout", false, func(a, b *Spec) bool { return a.IdleTimeout == b.IdleTimeout }},
	{"start_timeout", false, func(a, b *Spec) bool { return a.StartTimeout == b.StartTimeout }},
	{"stop_signal", false, func(a, b *Spec) bool { return a.StopSignal == b.StopSignal }},
	{"stop_timeout", false, func(a, b *Spec) bool { return a.StopTimeout == b.StopTimeout }},
	{"ready", false, func(a, b *Spec) bool { return a.Ready.Equal(b.Ready) }},
	{"max_pending", false, func(a, b *Spec) bool { return a.MaxPending == b.MaxPending }},
	{"udp_flow_timeout", false, func(a, b *Spec) bool { return a.UDPFlowTimeout == b.UDPFlowTimeout }},
	// The socket file is made afresh (rebound) with its new mode or owner;
	// the program does not see it.
	{"socket_mode", false, func(a, b *Spec) bool { return a.Socket.Mode == b.Socket.Mode }},
	{"socket_user", false, func(a, b *Spec) bool { return a.Socket.User == b.Socket.User }},
	{"socket_group", false, func(a, b *Spec) bool { return a.Socket.Group == b.Socket.Group }},
	{"scale", false, func(a, b *Spec) bool { return a.Scale == b.Scale }},
	{"match", false, func(a, b *Spec) bool {
		return slices.Equal(a.Match.SNI, b.Match.SNI) && slices.Equal(a.Match.Host, b.Match.Host)
	}},
	{"proxy_protocol", true, func(a, b *Spec) bool { return a.ProxyProtocol == b.ProxyProtocol }},
	{"wake", false, func(a, b *Spec) bool { return slices.Equal(a.Wake, b.Wake) }},
	{"jobs", false, func(a, b *Spec) bool {
		return slices.EqualFunc(a.Jobs, b.Jobs, func(x, y Job) bool {
			return x.Cron == y.Cron && slices.Equal(x.Command, y.Command) &&
				x.Timeout == y.Timeout && x.NeedsApp == y.NeedsApp
		})
	}},
	{"memory_priority", false, func(a, b *Spec) bool { return a.MemoryPriority == b.MemoryPriority }},
	{"memory_max", false, func(a, b *Spec) bool { return a.MemoryMax == b.MemoryMax }},
	{"unavailable_reply", false, func(a, b *Spec) bool { return a.UnavailableReply == b.UnavailableReply }},
	{"driver", true, func(a, b *Spec) bool { return a.Driver == b.Driver }},
	{"container", true, func(a, b *Spec) bool { return slices.Equal(a.Containers, b.Containers) }},
	{"service", true, func(a, b *Spec) bool { return a.Service == b.Service }},
	{"replicas", true, func(a, b *Spec) bool { return a.Replicas == b.Replicas }},
	{"start", true, func(a, b *Spec) bool { return slices.Equal(a.StartCommand, b.StartCommand) }},
	{"stop", true, func(a, b *Spec) bool { return slices.Equal(a.StopCommand, b.StopCommand) }},
	{"check", true, func(a, b *Spec) bool { return slices.Equal(a.CheckCommand, b.CheckCommand) }},
	{"user", true, func(a, b *Spec) bool { return a.User == b.User }},
	{"group", true, func(a, b *Spec) bool { return a.Group == b.Group }},
	{"limits", true, func(a, b *Spec) bool { return a.Limits == b.Limits }},
	{"umask", true, func(a, b *Spec) bool { return a.Umask == b.Umask }},
	{"needs", false, func(a, b *Spec) bool { return slices.Equal(a.Needs, b.Needs) }},
	{"idle_when", false, func(a, b *Spec) bool { return a.IdleWhen == b.IdleWhen }},
	{"client_idle_timeout", false, func(a, b *Spec) bool { return a.ClientIdleTimeout == b.ClientIdleTimeout }},
	{"idle_action", false, func(a, b *Spec) bool { return a.IdleAction == b.IdleAction }},
	{"freeze_timeout", false, func(a, b *Spec) bool { return a.FreezeTimeout == b.FreezeTimeout }},
	{"wake_from", false, func(a, b *Spec) bool { return slices.Equal(a.WakeFrom, b.WakeFrom) }},
	{"handoff", true, func(a, b *Spec) bool { return a.Handoff == b.Handoff }},
	{"hooks", false, func(a, b *Spec) bool { return a.Hooks.equal(b.Hooks) }},
	{"hook_timeout", false, func(a, b *Spec) bool { return a.HookTimeout == b.HookTimeout }},
	{"exclusive", false, func(a, b *Spec) bool { return a.Exclusive == b.Exclusive }},
	{"access_log", false, func(a, b *Spec) bool {
		return (a.AccessLog == nil) == (b.AccessLog == nil) && (a.AccessLog == nil || *a.AccessLog == *b.AccessLog)
	}},
}

// Equal reports whether two specs say the same thing, field by field.
func (s *Spec) Equal(o *Spec) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.Name == o.Name && s.File == o.File && len(s.Changed(o)) == 0
}

// Changed returns the app file keys whose values differ between old and
// s, in the order of the file reference: what a log line may say about a
// change (never the values: env may hold secrets). Every key when old is
// nil.
func (s *Spec) Changed(old *Spec) []string {
	var keys []string
	for _, k := range specKeys {
		if old == nil || !k.same(s, old) {
			keys = append(keys, k.key)
		}
	}
	return keys
}

// NeedsRestart reports whether a running program started from old must be
// restarted to match s: what it runs, where, with which environment, on
// which upstream, or what bytes it receives (proxy_protocol), and how it
// runs (driver and the driver's keys), and who accepts (handoff; the
// listen addresses too when the program holds them). Everything else (listen addresses,
// timeouts, stop_signal, match, schedules) takes effect without a restart. A nil old always needs one.
func (s *Spec) NeedsRestart(old *Spec) bool {
	if old == nil {
		return true
	}
	for _, k := range specKeys {
		if k.restart && !k.same(s, old) {
			return true
		}
	}
	if s.protocolsChanged(old) {
		return true
	}
	// A handed-off program holds the listening sockets it was given.
	return s.Handoff == HandoffSocket && !slices.Equal(s.Listen, old.Listen)
}

// protocolsChanged: the program must serve its upstream in another set of
// protocols ($PORT is picked free for them, readiness differs).
func (s *Spec) protocolsChanged(old *Spec) bool {
	t, u := s.Protocols()
	ot, ou := old.Protocols()
	return t != ot || u != ou
}
