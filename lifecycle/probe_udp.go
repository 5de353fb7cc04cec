package lifecycle

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/dynapm/dynapm/internal/procnet"
)

// A UDP program accepts nothing and may answer nothing a probe could send,
// so an app that only listens on UDP is ready once its program has bound
// the upstream port: an unconnected socket in the kernel's UDP tables on
// that port, on the upstream's address or a wildcard, as `ss -lun` lists
// them. The tables are read at most this often: a file read and parse.
const (
	udpProbeInterval    = 200 * time.Microsecond
	udpProbeMaxInterval = 5 * time.Millisecond
)

// errUDPNotBound is a try that found no socket on the upstream port yet.
var errUDPNotBound = errors.New("no UDP socket bound on the upstream port yet")

// onceUDPBound looks for a socket bound on upstream in the kernel's tables.
func onceUDPBound(upstream netip.AddrPort) error {
	inodes, err := procnet.Bound(procnet.UDPTables, procnet.UDPUnconnected, upstream)
	if err != nil {
		return err
	}
	if len(inodes) == 0 {
		return fmt.Errorf("%w (%s)", errUDPNotBound, upstream)
	}
	return nil
}
