package execdriver

import (
	"os/exec"
	"strconv"
	"strings"

	"github.com/dynapm/dynapm/lifecycle"
)

// listenPIDWrapper sets LISTEN_PID to the shell's own pid and execs the
// program in its place, so that the pid is the program's: systemd sets it
// in the child between fork and exec, which os/exec cannot. $0 is the
// program's path, "$@" its arguments.
const listenPIDWrapper = `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`

// passSockets hands req's sockets to cmd as systemd's socket activation
// does: descriptors 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and
// LISTEN_PID, and for inetd the connection as stdin and stdout. Any
// LISTEN_* of the app's own environment is dropped: the descriptors are
// DynaPM's to describe.
func passSockets(cmd *exec.Cmd, req lifecycle.StartRequest) {
	if len(req.Sockets) == 0 {
		return
	}
	cmd.ExtraFiles = req.Sockets
	if req.Conn != nil {
		cmd.Stdin, cmd.Stdout = req.Conn, req.Conn
	}
	env := make([]string, 0, len(cmd.Env)+2)
	for _, kv := range cmd.Env {
		if !strings.HasPrefix(kv, "LISTEN_") {
			env = append(env, kv)
		}
	}
	env = append(env, "LISTEN_FDS="+strconv.Itoa(len(req.Sockets)))
	if len(req.SocketNames) == len(req.Sockets) {
		env = append(env, "LISTEN_FDNAMES="+strings.Join(req.SocketNames, ":"))
	}
	cmd.Env = env
	cmd.Args = append([]string{"sh", "-c", listenPIDWrapper, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
}

// passesFiles reports whether cmd gives the program descriptors the
// spawner helper does not carry (it passes the output only): such a
// program is forked by the daemon.
func passesFiles(cmd *exec.Cmd) bool {
	return len(cmd.ExtraFiles) > 0 || cmd.Stdin != nil
}
