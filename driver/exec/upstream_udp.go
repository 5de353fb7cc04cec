package execdriver

import (
	"fmt"
	"net/netip"

	"github.com/dynapm/dynapm/internal/procnet"
	"github.com/dynapm/dynapm/lifecycle"
)

// checkUDPUpstreamFree is checkUpstreamFree for an app that listens on
// UDP: a socket already bound on the fixed upstream would take the app's
// datagrams, and pass the readiness check (the port bound) at once.
func checkUDPUpstreamFree(app, upstream string) error {
	ap, err := netip.ParseAddrPort(upstream)
	if err != nil {
		return nil // appfile resolves upstreams to literal addresses
	}
	found, err := procnet.Bound(procnet.UDPTables, procnet.UDPUnconnected, ap)
	if err != nil || len(found) == 0 {
		return nil
	}
	holder := "a process DynaPM cannot see (another user's)"
	if pid, cmd, ok := findHolder(found); ok {
		holder = fmt.Sprintf("pid %d (%s)", pid, cmd)
	}
	return fmt.Errorf("starting app %q: %w: %s/udp is held by %s, not by the app's program, which has not started yet; stop that process, or give the app another upstream",
		app, lifecycle.ErrUpstreamInUse, upstream, holder)
}
