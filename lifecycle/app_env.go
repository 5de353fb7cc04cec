package lifecycle

import (
	"strconv"

	"github.com/dynapm/dynapm/appfile"
)

// buildEnv returns the program's environment: the daemon's, then PORT and
// INSTANCE (the instance's index, 0 for an app without scale), then the
// app's env (sorted by key, so the result is stable) with the port
// expanded; see appfile.Spec.Environ.
//
// socket, when not empty, is the socket file the program serves on: it is
// $SOCKET, and ${SOCKET} is expanded in the app's env like ${PORT}.
func buildEnv(spec *appfile.Spec, port, instance int, socket string) []string {
	return spec.EnvironSocket(port, socket, "INSTANCE="+strconv.Itoa(instance))
}

// expandSpec returns spec with ${PORT} expanded in the command, so that an
// argv list run without a shell ("http.server", "${PORT}") gets the port too.
// The Spec itself is shared and immutable; this is a shallow copy.
// ${SOCKET} is expanded too when the program serves on socket.
func expandSpec(spec *appfile.Spec, port int, socket string) *appfile.Spec {
	s := *spec
	s.Command = expandArgs(spec.Command, port, socket)
	return &s
}

// expandArgs returns a copy of argv (the program's, a hook's, a
// ready.command's) with ${PORT}, and ${SOCKET} when socket is set,
// expanded in every element.
func expandArgs(argv []string, port int, socket string) []string {
	out := appfile.ExpandPorts(argv, port)
	if socket != "" {
		for i, a := range out {
			out[i] = appfile.ExpandVar(a, "SOCKET", socket)
		}
	}
	return out
}

// AppEnv is the environment the Manager gives an app started on port, for a
// driver that runs a command for the app outside a start (the command
// driver's check at daemon start); $INSTANCE is 0 there.
func AppEnv(spec *appfile.Spec, port int) []string { return buildEnv(spec, port, 0, "") }
