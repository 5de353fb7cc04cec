package lifecycle

// State is where an app is in its life. Every change of state happens under
// the Manager's lock, so a reader holding the lock sees a consistent app.
//
//	stopped ──wake/start──> starting ──probe passes──> ready
//	   ^                       │  exit/timeout/spawn error   │ idle, stop, reload,
//	   │                       v                             │ shutdown
//	   │                    failed ──backoff over──> stopped │
//	   │                       ^                             v
//	   └──────────────────── stopping <──────────────────────┘
//
// A crash of a ready instance goes to stopped (or failed while it crashes in
// a loop). With idle_action: freeze, an idle stop is a move from ready to
// frozen, and a wake moves it back to ready (freeze.go); a stop of a
// frozen app goes to stopping.
type State string

// The states an app can be in.
const (
	// Stopped: no process; the next wake starts one.
	Stopped State = "stopped"
	// Starting: a process was (or is being) spawned and is probed for
	// readiness; callers of Wake wait.
	Starting State = "starting"
	// Ready: the process answered the readiness probe; Wake leases it.
	Ready State = "ready"
	// Stopping: the process was asked to end; Wake waits for it to be gone
	// and then starts a fresh one.
	Stopping State = "stopping"
	// Frozen: idle with idle_action: freeze; every process is suspended
	// (Freezer). Wake, a cron wake and Start thaw it, and the connection
	// is served by the same process; Stop stops it.
	Frozen State = "frozen"
	// Failed: the last start failed (or the app crashes in a loop); starts
	// are refused with ErrBackoff until the backoff delay is over.
	Failed State = "failed"
)
