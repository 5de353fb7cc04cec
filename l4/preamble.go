package l4

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// preamble returns what goes to the upstream ahead of the client's unread
// bytes: the PROXY protocol header of r (if any), telling the upstream
// where the client's connection came from, then the bytes peeked from the
// client; nil when there is neither. It is a copy, so that the peeked
// bytes' buffer can go back to its pool at once.
func preamble(c *proxyConn, r Route, peeked []byte) ([]byte, error) {
	if r.ProxyProtocol == "" && len(peeked) == 0 {
		return nil, nil
	}
	pre := make([]byte, 0, maxProxyHeaderLen+len(peeked))
	if r.ProxyProtocol != "" {
		src, dst, err := c.addrs()
		if err != nil {
			return nil, err
		}
		if pre, err = appendProxyHeader(pre, r.ProxyProtocol, src, dst); err != nil {
			return nil, err
		}
	}
	return append(pre, peeked...), nil
}

// dropPreamble drops c, whose preamble could not be made, and its lease;
// the caller has closed the upstream.
func (s *Server) dropPreamble(c *proxyConn, r Route, release func(), err error) {
	s.logger().Warn("making the PROXY header failed, closing connection",
		slog.String("app", r.App), slog.Any("err", err))
	s.drop(c, release)
}

// addrs returns the client's address and the address it connected to,
// for a PROXY header.
func (c *proxyConn) addrs() (src, dst netip.AddrPort, err error) {
	if c.unix {
		return src, dst, fmt.Errorf("a client of a unix: listen address has no IP address for a PROXY header")
	}
	if c.client != nil {
		return c.client.RemoteAddr().(*net.TCPAddr).AddrPort(), c.client.LocalAddr().(*net.TCPAddr).AddrPort(), nil
	}
	sa, err := syscall.Getsockname(c.cfd)
	if err != nil {
		return src, dst, os.NewSyscallError("getsockname", err)
	}
	return c.remote, sockaddrAddrPort(sa), nil
}
