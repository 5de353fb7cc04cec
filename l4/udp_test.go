package l4

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// udpObs counts what a Server tells a UDPObserver.
type udpObs struct {
	flows, dropped atomic.Int64
	sent, received atomic.Int64
}

func (o *udpObs) ConnectionClosed(string, int64, int64) {}
func (o *udpObs) ConnectionTurnedAway(string)           {}
func (o *udpObs) ConnectionRefused(string, string)      {}
func (o *udpObs) FlowClosed(_ string, sent, received int64) {
	o.flows.Add(1)
	o.sent.Add(sent)
	o.received.Add(received)
}
func (o *udpObs) DatagramsDropped(_ string, n int) { o.dropped.Add(int64(n)) }

// startUDPEcho runs a UDP echo server on 127.0.0.1 standing in for an
// app's program.
func startUDPEcho(t testing.TB) netip.AddrPort {
	t.Helper()
	return startUDPServer(t, net.IPv4(127, 0, 0, 1), nil)
}

// startUDPServer runs a UDP server on ip that answers each datagram with
// answer's reply, the datagram itself when answer is nil. A test asking
// for IPv6 on a machine without it is skipped.
func startUDPServer(t testing.TB, ip net.IP, answer func([]byte) []byte) netip.AddrPort {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		if ip.To4() == nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	if rc, err := conn.SyscallConn(); err == nil {
		setRecvBuffer(rc, 8<<20)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<16)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			reply := buf[:n]
			if answer != nil {
				reply = answer(reply)
			}
			conn.WriteToUDPAddrPort(reply, from)
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// udpClient is one client socket of the test, connected to the listener.
func udpClient(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := c.SyscallConn(); err == nil {
		setRecvBuffer(rc, 4<<20)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func numbered(client, seq int) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b, uint32(client))
	binary.BigEndian.PutUint32(b[4:], uint32(seq))
	return b
}

// readNumbered reads one reply and returns its client and sequence number.
func readNumbered(c *net.UDPConn, buf []byte, timeout time.Duration) (client, seq int, err error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.Read(buf)
	if err != nil {
		return 0, 0, err
	}
	if n != 64 {
		return -1, -1, nil
	}
	return int(binary.BigEndian.Uint32(buf)), int(binary.BigEndian.Uint32(buf[4:])), nil
}

// TestUDPWakeHoldsDatagramsInOrder: ten clients send while their app
// wakes, then after. What came during the wake is queued up to the bound
// and delivered in order, the excess counted exactly; afterwards every
// datagram's reply reaches its sender, in order; flows end after their
// timeout and give their leases back.
func TestUDPWakeHoldsDatagramsInOrder(t *testing.T) {
	const (
		clients    = 10
		duringWake = 100
		after      = 1000
		maxPending = 500
		window     = 32
	)
	w := newTestWaker(t)
	gate := make(chan struct{})
	w.add("dns", &testApp{upstream: startUDPEcho(t), gate: gate})
	s, _ := newServer(t, w)
	obs := &udpObs{}
	s.Observer = obs
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "dns", MaxPending: maxPending, FlowTimeout: 500 * time.Millisecond}}}); errs != nil {
		t.Fatal(errs)
	}
	udpOnLoop(t, s, key)
	addr := s.Addr(key).String()
	conns := make([]*net.UDPConn, clients)
	for i := range conns {
		conns[i] = udpClient(t, addr)
	}

	// During the wake: every datagram is either queued or dropped.
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range duringWake {
				if _, err := c.Write(numbered(i, seq)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "the excess to be dropped", func() bool { return obs.dropped.Load() >= clients*duringWake-maxPending })
	close(gate)

	// Each client gets a prefix of what it sent, in order; together the
	// queue's bound.
	var kept atomic.Int64
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<16)
			next := 0
			for {
				ci, seq, err := readNumbered(c, buf, 20*time.Second)
				if err != nil {
					return // every reply is in: the rest was dropped
				}
				if ci != i || seq != next {
					t.Errorf("client %d: got reply (%d, %d), want (%d, %d)", i, ci, seq, i, next)
					return
				}
				next++
				kept.Add(1)
			}
		}()
	}
	waitFor(t, "the queue's replies", func() bool { return kept.Load() >= maxPending })
	for _, c := range conns {
		c.SetReadDeadline(time.Now())
	}
	wg.Wait()
	if kept := kept.Load(); kept != maxPending {
		t.Errorf("%d datagrams were delivered from the queue, want %d", kept, maxPending)
	}
	if got := obs.dropped.Load(); got != clients*duringWake-maxPending {
		t.Errorf("dropped %d datagrams, want exactly %d", got, clients*duringWake-maxPending)
	}

	// After: nothing lost, every reply in order to its sender.
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<16)
			sent := 0
			for got := 0; got < after; got++ {
				for sent < after && sent-got < window {
					if _, err := c.Write(numbered(i, sent)); err != nil {
						t.Error(err)
						return
					}
					sent++
				}
				ci, seq, err := readNumbered(c, buf, 5*time.Second)
				if err != nil {
					t.Errorf("client %d: reply %d: %v", i, got, err)
					return
				}
				if ci != i || seq != got {
					t.Errorf("client %d: got reply (%d, %d), want (%d, %d)", i, ci, seq, i, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	// The woken flows were handed over: on the event loop where that is
	// the data path.
	if n := udpFlowsOnLoop(t, s, key); n != clients {
		t.Errorf("%d flows after the wake, want %d", n, clients)
	}
	if got := obs.dropped.Load(); got != clients*duringWake-maxPending {
		t.Errorf("dropped %d datagrams in all, want %d", got, clients*duringWake-maxPending)
	}
	// Quiet flows end and release their leases.
	waitFor(t, "every flow to end", func() bool { return w.releases.Load() == w.wakes.Load() && obs.flows.Load() == w.wakes.Load() })
	if w.wakes.Load() < clients {
		t.Errorf("%d leases for %d clients", w.wakes.Load(), clients)
	}
	if obs.received.Load() != obs.sent.Load() || obs.sent.Load() != int64(64*(maxPending+clients*after)) {
		t.Errorf("flows counted %d bytes sent and %d received, want %d each", obs.sent.Load(), obs.received.Load(), 64*(maxPending+clients*after))
	}
}

// TestUDPProxyProtocolV2PrefixesEveryDatagram: with proxy_protocol v2,
// every datagram up, queued or not, starts with a v2 header in the DGRAM
// form naming the client; replies come back as the program sent them.
func TestUDPProxyProtocolV2PrefixesEveryDatagram(t *testing.T) {
	w := newTestWaker(t)
	gate := make(chan struct{})
	w.add("syslog", &testApp{upstream: startUDPEcho(t), gate: gate})
	s, _ := newServer(t, w)
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "syslog", ProxyProtocol: "v2"}}}); errs != nil {
		t.Fatal(errs)
	}
	listen := s.Addr(key).(*net.UDPAddr).AddrPort()
	c := udpClient(t, listen.String())
	client := c.LocalAddr().(*net.UDPAddr).AddrPort()
	want := appendProxyHeaderDgram(nil, client, listen)
	if want[13] != 0x12 || len(want) != 28 {
		t.Fatalf("header % x: want UDP over IPv4 (0x12), 28 bytes", want)
	}
	c.Write([]byte("queued"))
	waitFor(t, "the wake", func() bool { return w.waiting.Load() == 1 })
	close(gate)
	buf := make([]byte, 1<<16)
	for i, msg := range []string{"queued", "direct"} {
		if i == 1 {
			c.Write([]byte(msg))
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != string(want)+msg {
			t.Errorf("the program got % x, want the header % x then %q", buf[:n], want, msg)
		}
	}
}

// TestUDPWarmPathAllocatesNothing: once a flow is up, a datagram and its
// reply cross DynaPM without an allocation (batches come from a pool,
// the flow is found by a map lookup on the address).
func TestUDPWarmPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector (sync.Pool drops items on purpose)")
	}
	w := newTestWaker(t)
	w.add("echo", &testApp{upstream: startUDPEcho(t)})
	s, _ := newServer(t, w)
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "echo"}}}); errs != nil {
		t.Fatal(errs)
	}
	c := udpClient(t, s.Addr(key).String())
	msg, buf := []byte("ping"), make([]byte, 1<<16)
	roundTrip := func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 { // the flow, its goroutines and the pool's batches
		roundTrip()
	}
	const n = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		roundTrip()
	}
	runtime.ReadMemStats(&after)
	// The test's echo program and client run in this process too; a
	// little slack for the runtime's own (a GC cycle, a timer).
	if per := float64(after.Mallocs-before.Mallocs) / n; per > 0.05 {
		t.Errorf("%.2f allocations per datagram and reply, want none", per)
	}
}

// TestUDPFlowsAreBounded: past UDPMaxFlows, datagrams from new clients
// are dropped and counted; the clients with a flow go on being served.
func TestUDPFlowsAreBounded(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{upstream: startUDPEcho(t)})
	s, _ := newServer(t, w)
	s.UDPMaxFlows = 2
	obs := &udpObs{}
	s.Observer = obs
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "echo"}}}); errs != nil {
		t.Fatal(errs)
	}
	addr := s.Addr(key).String()
	buf := make([]byte, 64)
	var served []*net.UDPConn
	for range 2 {
		c := udpClient(t, addr)
		c.Write([]byte("in"))
		if _, _, err := readNumbered(c, buf, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		served = append(served, c)
	}
	third := udpClient(t, addr)
	third.Write([]byte("out"))
	waitFor(t, "the third client's datagram to be dropped", func() bool { return obs.dropped.Load() == 1 })
	if _, _, err := readNumbered(third, buf, 50*time.Millisecond); err == nil {
		t.Error("a client past the bound was served")
	}
	served[0].Write([]byte("still"))
	if _, _, err := readNumbered(served[0], buf, 10*time.Second); err != nil {
		t.Errorf("a client with a flow was not served: %v", err)
	}
}
