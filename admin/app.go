package admin

import "time"

// App is one app's status as the admin API reports it. Its JSON form is a
// stable contract (`dynapm status -json` prints an array of these): fields
// may be added, never renamed or removed. Times are omitted when unknown.
type App struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Mode  string `json:"mode"`
	// Handoff is who accepts the app's connections: proxy, socket
	// (the program, from the sockets DynaPM passes it) or inetd (a
	// program per connection).
	Handoff string `json:"handoff"`
	// Pid is the process group leader's id, 0 when no process runs.
	Pid int `json:"pid"`
	// StartedAt is when the running instance was spawned; zero when stopped.
	StartedAt time.Time `json:"started_at,omitzero"`
	// UptimeSeconds is filled in by the server from StartedAt when it
	// answers, so clients need not trust their own clock.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Connections are open spliced connections (proxy), the established
	// connections on the app's ports as the kernel counts them (socket)
	// or the programs running, one per connection (inetd); Pending are
	// connections held while the app starts.
	Connections int `json:"connections"`
	Pending     int `json:"pending"`
	// RSSBytes is the resident memory of the app's process group (0 when
	// unknown or not running).
	RSSBytes     uint64    `json:"rss_bytes"`
	LastActivity time.Time `json:"last_activity,omitzero"`
	// NextWake is the next scheduled (cron) start, zero when none.
	NextWake  time.Time `json:"next_wake,omitzero"`
	Listen    []string  `json:"listen"`
	Upstream  string    `json:"upstream"`
	LastError string    `json:"last_error,omitempty"`
	Starts    int       `json:"starts"`
	Restarts  int       `json:"restarts"`
	LastJob   *Job      `json:"last_job,omitempty"`
	// Instances are the app's live processes by index: one for an app
	// without scale, up to scale.max for one with it, none when stopped.
	// Pid, StartedAt and Upstream above are the first instance's;
	// Connections above is their sum.
	Instances []Instance `json:"instances"`
	// Status is what the program last said of itself with STATUS=
	// (ready: {notify: true}), the first instance's; omitted when nothing.
	Status string `json:"status,omitempty"`
}

// Instance is one process of an app (scale runs several).
type Instance struct {
	// Index is the instance's $INSTANCE (0, 1, ...).
	Index int `json:"index"`
	// Pid is 0 until the process is spawned.
	Pid int `json:"pid"`
	// State is starting, ready or stopping.
	State string `json:"state"`
	// Upstream is where this instance listens ("" until picked).
	Upstream    string    `json:"upstream"`
	Connections int       `json:"connections"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	// UptimeSeconds is filled in by the server from StartedAt, as App's.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Status is this instance's STATUS= text, as App's.
	Status string `json:"status,omitempty"`
}

// Job is the outcome of the last scheduled job an app ran.
type Job struct {
	Command  []string  `json:"command"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	ExitCode int       `json:"exit_code"`
	Error    string    `json:"error,omitempty"`
}

// errorBody is the JSON body of every non-2xx answer.
type errorBody struct {
	Error string `json:"error"`
	// Code is a machine-readable reason: "unknown_app", "bad_request",
	// "failed".
	Code string `json:"code"`
	// LogTail is the end of the app's log when a start or restart failed:
	// usually the program's own words about why.
	LogTail string `json:"log_tail,omitempty"`
}
