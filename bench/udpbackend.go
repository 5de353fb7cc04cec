package main

import (
	"net"
	"runtime"
)

// serveUDPBackend is the UDP program the benchmark measures: it sends
// every datagram back to where it came from. One goroutine per CPU reads
// the socket, so that the echo keeps up with a proxy on every core.
func serveUDPBackend(addr string) error {
	la, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp", la)
	if err != nil {
		return err
	}
	_ = c.SetReadBuffer(4 << 20)
	errs := make(chan error, runtime.NumCPU())
	for range runtime.NumCPU() {
		go func() { errs <- echoUDP(c) }()
	}
	return <-errs
}

// echoUDP answers datagrams on c until it fails; it allocates nothing
// per datagram.
func echoUDP(c *net.UDPConn) error {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		if _, err := c.WriteToUDPAddrPort(buf[:n], from); err != nil {
			return err
		}
	}
}
