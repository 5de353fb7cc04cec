package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/procnet"
	"github.com/dynapm/dynapm/internal/sockdiag"
)

func TestUDPBoundProbe(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := onceUDPBound(bound); err != nil {
		t.Fatalf("a bound socket was not found: %v", err)
	}
	// A connected socket of another program on a port is no listener.
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(bound))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc.Close()
	client := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := onceUDPBound(client); !errors.Is(err, errUDPNotBound) {
		t.Errorf("a connected socket counted as bound: %v", err)
	}
	if err := onceUDPBound(bound); !errors.Is(err, errUDPNotBound) {
		t.Errorf("a closed socket still counts as bound: %v", err)
	}
	// A wildcard IPv6 socket serves 127.0.0.1 too.
	pc6, err := net.ListenPacket("udp", "[::]:0")
	if err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	defer pc6.Close()
	port := pc6.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	if err := onceUDPBound(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)); err != nil {
		t.Errorf("a socket on [::] was not found: %v", err)
	}
}

func TestFreePortInEveryProtocol(t *testing.T) {
	spec, err := appfile.Parse(filepath.Join(t.TempDir(), "dns.yaml"), []byte("listen: ['127.0.0.1:1/udp', '127.0.0.1:1']\ncommand: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	up, port, err := pickUpstream(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if int(up.Port()) != port {
		t.Fatalf("upstream %s, port %d", up, port)
	}
	// The program can bind it in both.
	ln, err := net.Listen("tcp4", up.String())
	if err != nil {
		t.Fatalf("TCP: %v", err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp4", up.String())
	if err != nil {
		t.Fatalf("UDP: %v", err)
	}
	pc.Close()
}

// udpSocket binds a UDP socket on ip:port (0: the kernel picks) with
// SO_REUSEADDR, so that others may share the port, connects it to peer
// unless peer is zero, and returns it and its port.
func udpSocket(t *testing.T, ip [4]byte, port uint16, peer netip.AddrPort) (int, uint16) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: ip, Port: int(port)}); err != nil {
		t.Fatalf("binding %v:%d: %v", ip, port, err)
	}
	if peer.IsValid() {
		if err := syscall.Connect(fd, &syscall.SockaddrInet4{Addr: peer.Addr().As4(), Port: int(peer.Port())}); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, uint16(sa.(*syscall.SockaddrInet4).Port)
}

// triesProc is a running Process that counts waitReady's failed tries (it
// looks at Done after each) and closes reached once there were want.
type triesProc struct {
	*runningProc
	tries   atomic.Int64
	want    int64
	reached chan struct{}
}

func (p *triesProc) Done() <-chan struct{} {
	if p.tries.Add(1) == p.want {
		close(p.reached)
	}
	return p.runningProc.Done()
}

// A UDP-only app's default probe, among many sockets of other programs
// (and, on the upstream port, a client's connected socket and a server's
// on another address, neither of which would receive a datagram sent to
// the upstream): it does not pass while only those exist, sleeps
// precisely between tries as the TCP connect probe does, and passes on
// the first try after the program binds the port.
func TestUDPProbePassesOnTheFirstTryAfterTheBindOnABusyTable(t *testing.T) {
	lo := [4]byte{127, 0, 0, 1}
	// The client's socket holds the port, so that no other test takes it.
	peer := netip.MustParseAddrPort("127.0.0.1:9")
	_, port := udpSocket(t, lo, 0, peer)
	up := netip.AddrPortFrom(netip.AddrFrom4(lo), port)
	udpSocket(t, [4]byte{127, 0, 0, 2}, port, netip.AddrPort{})
	const busy = 400 // other programs' sockets, bound and connected (under a 1024 descriptor limit)
	for i := range busy {
		if i%2 == 0 {
			udpSocket(t, lo, 0, netip.AddrPort{})
		} else {
			udpSocket(t, lo, 0, peer)
		}
	}
	if err := onceUDPBound(up); !errors.Is(err, errUDPNotBound) {
		t.Fatalf("before the bind: %v, want errUDPNotBound", err)
	}
	// The /proc fallback agrees.
	if inodes, err := procnet.Bound(procnet.UDPTables, procnet.UDPUnconnected, up); err != nil || len(inodes) != 0 {
		t.Fatalf("before the bind, /proc/net/udp: %v, %v", inodes, err)
	}

	p := newProber()
	proc := &triesProc{runningProc: newRunningProc(), want: 20, reached: make(chan struct{})}
	r := &readiness{upstream: up, udpBound: true}
	done := make(chan error, 1)
	go func() {
		_, err := p.waitReady(context.Background(), proc, r, 0, time.Now().Add(time.Minute))
		done <- err
	}()
	select {
	case <-proc.reached:
	case err := <-done:
		t.Fatalf("the probe ended before the program bound its port: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no 20 tries in 30 s")
	}
	select {
	case err := <-done:
		t.Fatalf("the probe ended before the program bound its port: %v", err)
	default:
	}
	if n := len(p.precise); n != 1 {
		t.Errorf("%d precise-probe tokens held while probing, want 1: the UDP probe waits on Go's timers", n)
	}
	before := proc.tries.Load()
	udpSocket(t, lo, port, netip.AddrPort{}) // the program binds
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after the bind: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the probe did not pass within 30 s of the bind")
	}
	// A try that had failed but not yet looked at Done when before was
	// read, and one under way at the bind, may be counted after it; the
	// next one must pass.
	if after := proc.tries.Load() - before; after > 2 {
		t.Errorf("%d tries failed after the bind, want at most 2", after)
	}
	if n := len(p.precise); n != 0 {
		t.Errorf("%d precise-probe tokens still held after the probe passed", n)
	}
	// The /proc fallback finds it too.
	if inodes, err := procnet.Bound(procnet.UDPTables, procnet.UDPUnconnected, up); err != nil || len(inodes) != 1 {
		t.Errorf("after the bind, /proc/net/udp: %v, %v", inodes, err)
	}
}

// BenchmarkUDPProbeTry is one try of a UDP-only app's probe on a port not
// yet bound, with n other UDP sockets on the machine: the sock_diag lookup
// the probe makes, and the /proc/net/udp read it falls back on.
func BenchmarkUDPProbeTry(b *testing.B) {
	for _, n := range []int{0, 1000, 10000} {
		fds := make([]int, 0, n)
		for range n {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Skipf("socket %d of %d: %v", len(fds), n, err)
			}
			fds = append(fds, fd)
			if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				b.Fatal(err)
			}
		}
		up := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 9) // discard: never bound here
		b.Run(fmt.Sprintf("sock_diag/%d", n), func(b *testing.B) {
			for b.Loop() {
				if found, err := sockdiag.UDPBound(up); err != nil || found {
					b.Fatal(found, err)
				}
			}
		})
		b.Run(fmt.Sprintf("proc/%d", n), func(b *testing.B) {
			for b.Loop() {
				if inodes, err := procnet.Bound(procnet.UDPTables, procnet.UDPUnconnected, up); err != nil || len(inodes) > 0 {
					b.Fatal(inodes, err)
				}
			}
		})
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}
