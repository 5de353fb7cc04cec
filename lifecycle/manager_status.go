package lifecycle

import (
	"slices"
	"strings"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// AppStatus is a snapshot of one app, for the status command and metrics.
type AppStatus struct {
	Name  string
	State State
	// Pid is the process (group leader) id while a process runs, else 0.
	Pid  int
	Mode appfile.Mode
	// Upstream is where the current process listens ("" when none runs).
	Upstream string
	Listen   []string
	// StartedAt is when the current process was spawned (zero when none).
	StartedAt time.Time
	// Connections counts open leases; Pending counts callers held while
	// the app starts or stops.
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
	// State is starting, ready or stopping.
	State State
	// Upstream is where it listens ("" until picked).
	Upstream    string
	Connections int
	StartedAt   time.Time
	// StatusText is its program's last STATUS= text.
	StatusText string
}

// Status returns a snapshot of every configured app, sorted by name.
func (m *Manager) Status() []AppStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]AppStatus, 0, len(m.apps))
	for _, a := range m.apps {
		if a.removed {
			continue
		}
		st := AppStatus{
			Name:         a.name,
			State:        a.state,
			Mode:         mode(a.spec),
			Listen:       slices.Clone(a.spec.Listen),
			Connections:  a.conns,
			Pending:      a.pending,
			LastActivity: a.lastActivity,
			LastError:    a.lastErr,
			Starts:       a.starts,
			Restarts:     a.restarts,
			Refused:      a.refusedTotal,
		}
		for _, in := range a.insts {
			is := InstanceStatus{Index: in.index, State: in.instState(), Connections: in.conns, StartedAt: in.spawnedAt,
				StatusText: in.watch.statusText()}
			if in.proc != nil {
				is.Pid = in.proc.Pid()
			}
			if in.upstream.IsValid() {
				is.Upstream = in.upstream.String()
			}
			st.Instances = append(st.Instances, is)
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
	return out
}
