package memory

import (
	"context"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// AppUsage is one app as the lifecycle manager reports it to the Monitor.
type AppUsage struct {
	// Name is the app's name.
	Name string
	// Mode is the app's mode: always apps are never stopped for memory.
	Mode appfile.Mode
	// Pid is the app's main process, 0 when no process runs. Its whole
	// process tree is measured.
	Pid int
	// Pids lists every process of an app running several instances (Pid
	// among them), nil for an app with one: its RSS is the sum of their
	// trees.
	Pids []int
	// Reporters holds the app's instances that report their own memory
	// (a container's is the engine's cgroup figure, not a process tree's).
	// When there are any, the app's RSS is the sum of their figures and no
	// process tree is measured; Pid then only tells one run from the next.
	// An app with neither a pid nor a reporter (a Swarm service, a command
	// driver app) counts 0 and is never stopped for memory.
	Reporters []Reporter
	// Stopping says a stop is already under way: its memory is counted as
	// about to be freed, so no further app is stopped for it.
	Stopping bool
	// Frozen says the app is frozen (idle_action: freeze): idle, yet
	// holding its memory. Frozen apps are stopped first, the longest
	// frozen first (FrozenSince), whatever their connections.
	Frozen      bool
	FrozenSince time.Time
	// Connections is the number of open client connections (including
	// connections held while the app starts).
	Connections int
	// Priority is memory_priority: higher survives longer.
	Priority int
	// LastActive is when the app last had an open connection or started.
	LastActive time.Time
	// MemoryMax is memory_max in bytes, 0 for none.
	MemoryMax int64
}

// Reporter is an app instance that knows its own memory use. The lifecycle
// manager's optional lifecycle.MemoryReporter is this interface.
type Reporter interface {
	// MemoryBytes returns the instance's memory in use, in bytes. It may
	// ask another process (the Docker Engine) and must return when ctx
	// ends.
	MemoryBytes(ctx context.Context) (uint64, error)
}

// AppReading is an app with its measured tree RSS.
type AppReading struct {
	AppUsage
	// RSS is the resident set size of the app's process tree in bytes (or
	// the sum of its Reporters' figures), 0 when no process runs.
	RSS int64
}

// Reading is one measurement of the machine and the apps.
type Reading struct {
	// Available is MemAvailable in bytes.
	Available int64
	// Total is MemTotal in bytes.
	Total int64
	// Apps holds every app the manager knows, running or not.
	Apps []AppReading
}

// running says the app has a process whose memory a stop would free.
func (a AppReading) running() bool {
	return (a.Pid > 0 || len(a.Reporters) > 0) && !a.Stopping
}

// runID tells one run of the app from the next: its pid, -1 for an app
// whose instances report their memory without a pid, 0 when none runs.
func (a AppUsage) runID() int {
	if a.Pid == 0 && len(a.Reporters) > 0 {
		return -1
	}
	return a.Pid
}
