package lifecycle

import (
	"slices"
	"strings"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/sockdiag"
)

// AppStatus is a snapshot of one app, for the status command and metrics.
type AppStatus struct {
	Name  string
	State State
	// Handoff is the app's handoff: proxy, socket or inetd.
	Handoff string
	// Pid is the process (group leader) id while a process runs, else 0.
	Pid  int
	Mode appfile.Mode
	// Upstream is where the current process listens ("" when none runs).
	Upstream string
	Listen   []string
	// StartedAt is when the current process was spawned (zero when none).
	StartedAt time.Time
	// Connections counts open leases (proxy), the established
	// connections on the app's ports as the kernel counts them (socket,
	// while it runs) or the programs running, one per connection (inetd);
	// Pending counts callers held while the app starts or stops.
	Connections  int
	Pending      int
	LastActivity time.Time
	// LastError is why the last start failed or the last process exited.
	LastError string
	// StopsAt is when the app (or, with scale, its next instance) stops
	// for idleness unless a connection comes first; zero when no idle
	// stop is due (connections open, not ready, or a mode that stays up).
	StopsAt time.Time
	// Starts counts spawns; Restarts the starts that replaced a process
	// (reload, Restart, always-mode crash recovery).
	Starts   int
	Restarts int
	// Refused counts callers turned away by max_pending.
	Refused int
	// StatusText is what the program last said of itself with STATUS=
	// (ready: {notify: true}), cleaned to one printable line; "" when
	// nothing.
	StatusText string
	// Needs lists the apps this one needs (its file's needs:); NeededBy
	// the configured apps whose files need it; KeptUpBy those of them that
	// run now and so keep it up.
	Needs    []string
	NeededBy []string
	KeptUpBy []string
	// LastStopKilled: the last stop of a running process ended in a kill
	// after stop_timeout.
	LastStopKilled bool
	// Pinned: dynapm pin keeps the app up, until PinnedUntil (zero: until
	// unpinned). Disabled: dynapm disable keeps it stopped.
	Pinned      bool
	PinnedUntil time.Time
	Disabled    bool
	// Exclusive is the app's exclusive group, "" for none.
	Exclusive string
	// Instances lists the app's live processes by index: one for an app
	// without scale. Pid, Upstream, StartedAt and StatusText above are the
	// first's; Connections above is their sum.
	Instances []InstanceStatus
}

// InstanceStatus is a snapshot of one instance of an app.
type InstanceStatus struct {
	// Index is the instance's $INSTANCE.
	Index int
	// Pid is its process (group leader) id, 0 until spawned.
	Pid int
	// State is starting, ready, frozen or stopping.
	State State
	// Upstream is where it listens ("" until picked).
	Upstream    string
	Connections int
	StartedAt   time.Time
	// StatusText is its program's last STATUS= text.
	StatusText string
}

// Status returns a snapshot of every configured app, sorted by name. The
// connections of running handoff: socket apps are counted from the
// kernel, outside the lock.
func (m *Manager) Status() []AppStatus {
	out, counts := m.statusLocked()
	for i, spec := range counts {
		if spec == nil {
			continue
		}
		if n, err := sockdiag.Established(listenPorts(spec)); err == nil {
			out[i].Connections = n
			if len(out[i].Instances) > 0 {
				out[i].Instances[0].Connections = n
			}
		}
	}
	return out
}

// statusLocked is Status's snapshot, with the spec of each running
// handoff: socket app at its index (nil for the others): those whose
// connections the kernel counts.
func (m *Manager) statusLocked() ([]AppStatus, []*appfile.Spec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]AppStatus, 0, len(m.apps))
	neededBy, keptUpBy := m.dependencyMapsLocked()
	now := time.Now()
	for _, a := range m.apps {
		if a.removed {
			continue
		}
		st := AppStatus{
			Name:           a.name,
			State:          a.state,
			Mode:           mode(a.spec),
			Listen:         slices.Clone(a.spec.Listen),
			Connections:    a.conns,
			Pending:        a.pending,
			LastActivity:   a.lastActivity,
			LastError:      a.lastErr,
			Starts:         a.starts,
			Restarts:       a.restarts,
			LastStopKilled: a.stopKilled,
			Refused:        a.refusedTotal,
			Needs:          slices.Clone(a.spec.Needs),
			NeededBy:       neededBy[a.name],
			KeptUpBy:       keptUpBy[a.name],
			Disabled:       a.over.Disabled,
			Exclusive:      a.spec.Exclusive,
		}
		if a.pinned(now) {
			st.Pinned, st.PinnedUntil = true, a.over.PinnedUntil
		}
		for _, in := range a.insts {
			is := InstanceStatus{Index: in.index, State: in.instState(), Connections: in.conns + in.passive, StartedAt: in.spawnedAt,
				StatusText: in.watch.statusText()}
			if in.proc != nil {
				is.Pid = in.proc.Pid()
			}
			is.Upstream = in.upstreamText()
			st.Instances = append(st.Instances, is)
		}
		st.Handoff = a.spec.Handoff
		if st.Handoff == "" {
			st.Handoff = appfile.HandoffProxy
		}
		if len(a.inetd) > 0 {
			// Its programs are its instances, one per connection; it is
			// ready while one runs.
			st.State, st.Connections = Ready, len(a.inetd)
			for p := range a.inetd {
				if p.pid != 0 {
					st.Instances = append(st.Instances, InstanceStatus{Pid: p.pid, State: Ready, Connections: 1, StartedAt: p.startedAt})
				}
			}
			slices.SortFunc(st.Instances, func(x, y InstanceStatus) int { return x.StartedAt.Compare(y.StartedAt) })
			for i := range st.Instances {
				st.Instances[i].Index = i
			}
		}
		if next, ok := nextIdle(a); ok {
			st.StopsAt = next
		}
		if len(st.Instances) > 0 {
			first := st.Instances[0]
			st.Pid, st.Upstream, st.StartedAt, st.StatusText = first.Pid, first.Upstream, first.StartedAt, first.StatusText
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(x, y AppStatus) int { return strings.Compare(x.Name, y.Name) })
	counts := make([]*appfile.Spec, len(out))
	for i, st := range out {
		if a := m.apps[st.Name]; a.spec.Handoff == appfile.HandoffSocket && a.state == Ready {
			counts[i] = a.spec
		}
	}
	return out, counts
}

// dependencyMapsLocked returns, by app name, the configured apps whose
// files need it and the running ones among them that hold it now, each
// sorted: one walk over every app, not one per app.
func (m *Manager) dependencyMapsLocked() (neededBy, keptUpBy map[string][]string) {
	neededBy, keptUpBy = map[string][]string{}, map[string][]string{}
	for _, x := range m.apps {
		if x.removed {
			continue
		}
		for _, n := range x.spec.Needs {
			neededBy[n] = append(neededBy[n], x.name)
		}
		if len(x.insts) <= 1 {
			// The common case: one instance or none, each need once.
			for _, in := range x.insts {
				for _, b := range in.needs {
					keptUpBy[b.name] = append(keptUpBy[b.name], x.name)
				}
			}
			continue
		}
		var held []*app // several instances hold the same needs
		for _, in := range x.insts {
			for _, b := range in.needs {
				if !slices.Contains(held, b) {
					held = append(held, b)
					keptUpBy[b.name] = append(keptUpBy[b.name], x.name)
				}
			}
		}
	}
	for _, names := range neededBy {
		slices.Sort(names)
	}
	for _, names := range keptUpBy {
		slices.Sort(names)
	}
	return neededBy, keptUpBy
}
