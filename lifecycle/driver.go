package lifecycle

import (
	"context"
	"os"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// Driver is a way to run an app, chosen by the app file's driver: key:
// exec (the default), docker, swarm or command, each implemented in a
// package under driver/. The Manager owns states and timing; a Driver only
// starts and stops. Optional interfaces (driver_optional.go) let a driver
// say more.
type Driver interface {
	// Start launches the app described by req and returns once it has been
	// launched (not once it is ready: the Manager probes readiness).
	Start(ctx context.Context, req StartRequest) (Process, error)
}

// StartRequest is what a Driver needs to start one instance of an app.
type StartRequest struct {
	Spec *appfile.Spec
	// Upstream is the address the program must listen on (host:port);
	// Port is its port, passed as $PORT.
	Upstream string
	Port     int
	// Env is the full environment for the program (daemon env + app env,
	// ${PORT} expanded).
	Env []string
	// Log receives the program's stdout and stderr.
	Log *os.File
	// Sockets, when set, are passed to the program as descriptors 3, 4,
	// ... with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES, as systemd's
	// socket activation does (handoff: socket, inetd). The caller closes
	// its copies once Start returns. Only the exec driver takes them.
	Sockets []*os.File
	// SocketNames are the names LISTEN_FDNAMES gives, one per socket.
	SocketNames []string
	// Conn, when set, is the program's stdin and stdout too (handoff:
	// inetd); its stderr stays Log.
	Conn *os.File
}

// Process is one started instance of an app.
type Process interface {
	// Pid is the process (group leader) id, or 0 when there is none.
	Pid() int
	// Done is closed when the instance has exited.
	Done() <-chan struct{}
	// Err is the exit status once Done is closed (nil for a clean exit).
	Err() error
	// Stop asks the instance to end with sig, then kills it after timeout,
	// and returns once it (and everything it started) is gone.
	Stop(sig syscall.Signal, timeout time.Duration) error
}
