// Package spawner starts programs from a small helper process, so that a
// daemon holding thousands of descriptors does not pay for them on every
// start.
//
// Why: exec(2) closes every close-on-exec descriptor of the process that
// forks, one by one, in the child. DynaPM holds a listening socket per app,
// so with thousands of apps every start from the daemon pays for them all
// (docs/BENCHMARKS.md, the spawner helper; BenchmarkStart measures it).
// The helper is started before any listener exists, so its descriptor
// table is a handful of entries; the daemon sends it what to run over a
// socket pair, with the program's descriptors (its output; for a
// handed-off program its sockets, started traced to set LISTEN_PID, as
// package listenpid does), and it answers with the pid, and later with the exit status, since the program
// is its child. Like systemd's PID 1, it does nothing else.
//
// The helper is the daemon's own binary run with HelperArg as its first
// argument; main (and a test binary's TestMain) must call Serve then.
package spawner

import "syscall"

// HelperArg is the first argument that makes the binary run as the helper.
const HelperArg = "__dynapm_spawner"

// Request is one program to start, in a new process group of its own (its
// pgid is its pid), with the descriptors Fds says.
type Request struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir,omitempty"`
	// Credential, when set, is the user, group and supplementary groups
	// the program runs as.
	Credential *syscall.Credential `json:"cred,omitempty"`
	// Cgroup: the last descriptor sent with the request is a cgroup's
	// directory, in which the program is born.
	Cgroup bool `json:"cgroup,omitempty"`
	// Fds are the program's descriptors 0, 1, 2, ...: each the index of
	// a descriptor sent with the request, or -1 for /dev/null.
	Fds []int `json:"fds"`
	// ListenPID: the program's LISTEN_PID is set to its pid by a traced
	// start (package listenpid).
	ListenPID bool `json:"listen_pid,omitempty"`
}

// maxFiles bounds the descriptors sent with one request (the kernel's
// SCM_MAX_FD is 253).
const maxFiles = 250

// message is what the helper sends back: the answer to a request
// (started, with the pid, or failed) or, later, a program's end.
type message struct {
	Type string `json:"t"` // "started", "failed", "exited"
	Pid  int    `json:"pid,omitempty"`
	// Failed: the errno of the failed fork or exec (0 if none), and the
	// error's text; Traced: the traced start failed after the fork (the
	// program was killed before it ran).
	Errno  int    `json:"errno,omitempty"`
	Error  string `json:"error,omitempty"`
	Traced bool   `json:"traced,omitempty"`
	// Exited: the wait status.
	Status uint32 `json:"status,omitempty"`
}

// maxMessage bounds one request (the environment is the large part).
const maxMessage = 1 << 20
