package memory

import (
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
	// Stopping says a stop is already under way: its memory is counted as
	// about to be freed, so no further app is stopped for it.
	Stopping bool
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

// AppReading is an app with its measured tree RSS.
type AppReading struct {
	AppUsage
	// RSS is the resident set size of the app's process tree in bytes, 0
	// when no process runs.
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
func (a AppReading) running() bool { return a.Pid > 0 && !a.Stopping }
