package execdriver

import (
	"os/exec"
	"strconv"
	"strings"

	"github.com/dynapm/dynapm/lifecycle"
)

// passSockets hands req's sockets to cmd as systemd's socket activation
// does: descriptors 3, 4, ... with LISTEN_FDS and LISTEN_FDNAMES, and for
// inetd the connection as stdin and stdout. Any LISTEN_* of the app's own
// environment is dropped: the descriptors are DynaPM's to describe. It
// reports whether it did: the program must then be started with
// LISTEN_PID (startListening).
func passSockets(cmd *exec.Cmd, req lifecycle.StartRequest) bool {
	if len(req.Sockets) == 0 {
		return false
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
	return true
}
