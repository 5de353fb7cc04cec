package lifecycle

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/dynapm/dynapm/internal/procnet"
	"github.com/dynapm/dynapm/internal/sockdiag"
)

// A UDP program accepts nothing and may answer nothing a probe could send,
// so an app that only listens on UDP is ready once its program has bound
// the upstream port: an unconnected socket on that port, on the upstream's
// address or a wildcard, as `ss -lun` lists them. A try asks the kernel
// for that one socket (sock_diag), whose cost does not grow with the
// sockets on the machine as a read of /proc/net/udp does, so it is tried as
// often as a TCP connect (waitReady).

// errUDPNotBound is a try that found no socket on the upstream port yet.
var errUDPNotBound = errors.New("no UDP socket bound on the upstream port yet")

// onceUDPBound looks for a socket bound on upstream in the kernel's tables.
func onceUDPBound(upstream netip.AddrPort) error {
	found, err := sockdiag.UDPBound(upstream)
	if errors.Is(err, sockdiag.ErrNoUDPDiag) {
		var inodes []string
		inodes, err = procnet.Bound(procnet.UDPTables, procnet.UDPUnconnected, upstream)
		found = len(inodes) > 0
	}
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w (%s)", errUDPNotBound, upstream)
	}
	return nil
}
