package lifecycle

import (
	"context"
	"errors"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/memory"
)

// Optional interfaces. A Driver or Process implements them when it knows
// more than a process id can tell; the Manager looks for them with a type
// assertion, so the exec driver needs none of them.

// ReadyChecker is implemented by a Process with a readiness signal of its
// own: a container's healthcheck, the running tasks of a Swarm service. The
// Manager's probe calls Ready until it reports true and only then probes
// the upstream as usual, so that a container that is healthy but not yet
// reachable, or a routing mesh that accepts connections with no task
// behind it, is not taken for ready. An error is retried like a failed
// probe until start_timeout.
type ReadyChecker interface {
	Ready(ctx context.Context) (bool, error)
}

// MemoryReporter is implemented by a Process whose memory is not its
// process tree's (a container's memory lives in the engine's cgroup
// figures). MemoryBytes returns the instance's memory in use, in bytes,
// and must return when ctx ends. The memory policy (budget, memory_max,
// who is stopped first) counts this figure for the instance instead of
// measuring the tree under Pid; an instance with neither a Pid nor a
// MemoryBytes counts 0. It is memory.Reporter, which the memory Monitor
// calls: one interface for both sides.
type MemoryReporter = memory.Reporter

// RunningChecker is implemented by a Driver that can tell whether an app is
// running without the Manager having started it (a container someone
// started, a service a `check` command reports as up). The Manager asks
// once when it learns of an on-demand app and, when it runs, adopts it
// (reason "adopt"): Start then attaches to it rather than starting anew,
// and the idle timer applies as usual.
type RunningChecker interface {
	Running(ctx context.Context, spec *appfile.Spec) (bool, error)
}

// OutsideStartWatcher is implemented by a Driver that notices when an app
// it runs is started by someone else while DynaPM has it stopped (a
// container started with docker start). NewManager hands it the Manager
// as its Adopter; the driver calls Adopt for an app it sees running, and
// the Manager adopts the app as it does one found running when it learns
// of it (see RunningChecker): Start attaches to it, and idle and memory
// stops apply as usual.
type OutsideStartWatcher interface {
	WatchOutsideStarts(Adopter)
}

// KillReporter is implemented by a Process that can tell whether its last
// Stop ended in a kill once the timeout was over, rather than in an exit
// at the stop signal: `dynapm stop` says so.
type KillReporter interface {
	KilledAfterTimeout() bool
}

// AppForgetter is implemented by a Driver that keeps something of an app
// between its starts (the exec driver's cgroup made ahead of the next
// one). The Manager calls ForgetApp once an app that left the
// configuration is gone, with its lock held: it must be quick and must
// not call the Manager.
type AppForgetter interface {
	ForgetApp(name string)
}

// Adopter is the Manager's side of OutsideStartWatcher.
type Adopter interface {
	// Adopt starts app name with reason "adopt" if it is stopped and its
	// current spec is what the driver saw running (same reports it: the
	// app's driver and objects, which a reload may have changed), and
	// reports whether it did. It does not wait for the start. same is
	// called with the Manager's lock held: it must be quick and must not
	// call the Manager.
	Adopt(name string, same func(*appfile.Spec) bool) bool
}

// Freezer is implemented by a Process whose processes can be suspended
// and resumed where they are (idle_action: freeze): SIGSTOP and SIGCONT to
// the process group, a cgroup's cgroup.freeze, docker pause. Freeze
// returns once every process is suspended, Thaw once every one runs
// again; both must return when ctx ends. The Manager calls them one at a
// time per instance, and thaws an instance before it stops it.
type Freezer interface {
	Freeze(ctx context.Context) error
	Thaw(ctx context.Context) error
}

// QuickThawer is a Freezer that can also resume its processes without
// waiting for the kernel's report: a write to cgroup.freeze, a SIGCONT.
// The Manager calls ThawNow, its lock released, for a connection to a
// frozen app (TryWake), which is then served on the thread that accepted
// it; a failure leaves the thaw to Thaw.
type QuickThawer interface {
	Freezer
	ThawNow() error
}

// ErrStoppedOutside is what a Process's Err wraps when the instance ended
// because someone else stopped it (docker stop, a pm2 stop, a systemctl
// stop): the Manager records the app as stopped, not crashed, so that the
// next connection starts it again without a crash backoff.
var ErrStoppedOutside = errors.New("stopped from outside DynaPM")

// ErrMemoryKilled is what a Process's Err wraps when the kernel's OOM
// killer ended the instance at its memory limit (memory_max as a cgroup's
// memory.max): the Manager records a stop with reason memory, not a crash.
var ErrMemoryKilled = errors.New("killed by the kernel at memory_max")
