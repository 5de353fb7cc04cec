package l4

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// udpRecorder is a UDP program that records what it receives, with the
// PROXY header of each datagram cut off (hdr bytes).
type udpRecorder struct {
	conn *net.UDPConn
	hdr  int
	mu   sync.Mutex
	got  []string
	from map[netip.AddrPort]bool
}

func startUDPRecorder(t *testing.T, hdr int) *udpRecorder {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRecorder{conn: conn, hdr: hdr, from: map[netip.AddrPort]bool{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<17)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			d := ""
			if n >= hdr {
				d = string(buf[hdr:n])
			}
			r.mu.Lock()
			r.got = append(r.got, d)
			r.from[from] = true
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return r
}

func (r *udpRecorder) addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// take returns what was received so far and forgets it.
func (r *udpRecorder) take() (got []string, sources int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got, sources = r.got, len(r.from)
	r.got, r.from = nil, map[netip.AddrPort]bool{}
	return got, sources
}

func (r *udpRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// TestUDPOversizeDatagramIsSkippedAndCounted: with proxy_protocol v2 a
// datagram of the largest size an IPv4 client may send no longer fits once
// prefixed: that one datagram is dropped and counted, and those around it
// go on up the same flow, while the app wakes and once it is warm.
func TestUDPOversizeDatagramIsSkippedAndCounted(t *testing.T) {
	up := startUDPRecorder(t, 28)
	for _, waking := range []bool{true, false} {
		w := newTestWaker(t)
		var gate chan struct{}
		if waking {
			gate = make(chan struct{})
		}
		w.add("syslog", &testApp{upstream: up.addr(), gate: gate})
		s, _ := newServer(t, w)
		obs := &udpObs{}
		s.Observer = obs
		const key = "127.0.0.1:0/udp"
		if errs := s.Apply(map[string][]Route{key: {{App: "syslog", ProxyProtocol: "v2"}}}); errs != nil {
			t.Fatal(errs)
		}
		udpOnLoop(t, s, key)
		c := udpClient(t, s.Addr(key).String())
		if !waking {
			c.Write([]byte("warmup"))
			waitFor(t, "the warm-up datagram", func() bool { return up.count() == 1 })
			up.take()
		}
		for _, d := range [][]byte{[]byte("a"), make([]byte, 65507), []byte("b"), []byte("c")} {
			if _, err := c.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		if waking {
			waitFor(t, "the wake", func() bool { return w.waiting.Load() == 1 })
			close(gate)
		}
		waitFor(t, "a, b and c upstream", func() bool { return up.count() >= 3 && obs.dropped.Load() >= 1 })
		got, sources := up.take()
		if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" || sources != 1 {
			t.Errorf("waking %v: the program got %q from %d sources, want a, b, c from one flow", waking, got, sources)
		}
		if d := obs.dropped.Load(); d != 1 {
			t.Errorf("waking %v: %d datagrams counted dropped, want 1", waking, d)
		}
		if f := obs.flows.Load(); f != 0 || w.wakes.Load() != 1 {
			t.Errorf("waking %v: %d flows ended, %d leases: the flow should live on", waking, f, w.wakes.Load())
		}
	}
}

// TestUDPListenSocketSendBuffer: the listen socket, which sends every
// reply, has a send buffer as big as its receive buffer, forced past
// wmem_max where the daemon may (root).
func TestUDPListenSocketSendBuffer(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{upstream: startUDPEcho(t)})
	s, _ := newServer(t, w)
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "echo"}}}); errs != nil {
		t.Fatal(errs)
	}
	s.mu.Lock()
	l := s.udp.listeners[key]
	s.mu.Unlock()
	var got int
	var gerr error
	get := func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) }
	if l.loop != nil {
		l.fdMu.Lock()
		get(uintptr(l.fd))
		l.fdMu.Unlock()
	} else if err := l.rc.Control(get); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	want := udpSendBuffer
	if os.Geteuid() != 0 {
		b, err := os.ReadFile("/proc/sys/net/core/wmem_max")
		if err != nil {
			t.Skipf("not root and no wmem_max: %v", err)
		}
		max, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		want = min(want, max)
	}
	if got < 2*want { // the kernel doubles what it is asked for
		t.Errorf("listen socket's send buffer is %d bytes, want %d", got, 2*want)
	}
}

// TestUDPRefusedReplyIsCountedDropped: a reply the listen socket refuses
// (an IPv6 upstream's 65,527-byte reply to an IPv4 client of a dual-stack
// listener: too big for IPv4) is counted dropped, not as bytes received,
// and the replies around it reach the client.
func TestUDPRefusedReplyIsCountedDropped(t *testing.T) {
	big := make([]byte, 65527)
	upAddr := startUDPServer(t, net.IPv6loopback, func(in []byte) []byte {
		if string(in) == "big" {
			return big
		}
		return in
	})
	w := newTestWaker(t)
	w.add("echo", &testApp{upstream: upAddr})
	s, _ := newServer(t, w)
	obs := &udpObs{}
	s.Observer = obs
	const key = "[::]:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "echo", FlowTimeout: 50 * time.Millisecond}}}); errs != nil {
		t.Fatal(errs)
	}
	udpOnLoop(t, s, key)
	port := s.Addr(key).(*net.UDPAddr).Port
	c := udpClient(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	buf := make([]byte, 1<<16)
	for _, msg := range []string{"one", "big", "two"} {
		c.Write([]byte(msg))
		if msg == "big" {
			continue
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("the client got %q, %v; want %q", buf[:n], err, msg)
		}
	}
	waitFor(t, "the flow to end", func() bool { return obs.flows.Load() == 1 })
	if d := obs.dropped.Load(); d != 1 {
		t.Errorf("%d datagrams counted dropped, want the refused reply", d)
	}
	if r := obs.received.Load(); r != int64(len("one")+len("two")) {
		t.Errorf("the flow counted %d bytes received, want %d", r, len("one")+len("two"))
	}
}

// TestUDPUpstreamZoneByNameOrNumber: an IPv6 upstream's zone may name the
// interface or give its index, as for net.DialUDP; a warm flow reaches it
// either way.
func TestUDPUpstreamZoneByNameOrNumber(t *testing.T) {
	upAddr := startUDPServer(t, net.IPv6loopback, nil)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no lo: %v", err)
	}
	for _, zone := range []string{"lo", strconv.Itoa(lo.Index)} {
		if id, err := zoneID(zone); err != nil || id != uint32(lo.Index) {
			t.Errorf("zone %q: index %d, %v; want %d", zone, id, err, lo.Index)
		}
		w := newTestWaker(t)
		upstream := netip.AddrPortFrom(netip.IPv6Loopback().WithZone(zone), upAddr.Port())
		w.add("echo", &testApp{upstream: upstream})
		s, _ := newServer(t, w)
		const key = "127.0.0.1:0/udp"
		if errs := s.Apply(map[string][]Route{key: {{App: "echo"}}}); errs != nil {
			t.Fatal(errs)
		}
		udpOnLoop(t, s, key)
		c := udpClient(t, s.Addr(key).String())
		c.Write(numbered(0, 1))
		if ci, seq, err := readNumbered(c, make([]byte, 1<<16), 10*time.Second); err != nil || ci != 0 || seq != 1 {
			t.Errorf("upstream %s: reply (%d, %d), %v", upstream, ci, seq, err)
		}
	}
	if _, err := zoneID("no-such-interface"); err == nil {
		t.Error("an unknown interface name was taken as a zone")
	}
}

// TestUDPFlowEndsPromptlyWhenProgramExits: the program of a warm flow
// sends its last replies and exits (its port closed); the client's next
// datagram is refused by the kernel, and that one refusal ends the flow
// and gives its lease back, long before the flow timeout.
func TestUDPFlowEndsPromptlyWhenProgramExits(t *testing.T) {
	for round := range 20 {
		up, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		w := newTestWaker(t)
		w.add("echo", &testApp{upstream: up.LocalAddr().(*net.UDPAddr).AddrPort()})
		s, _ := newServer(t, w)
		obs := &udpObs{}
		s.Observer = obs
		const key = "127.0.0.1:0/udp"
		if errs := s.Apply(map[string][]Route{key: {{App: "echo", FlowTimeout: time.Hour}}}); errs != nil {
			t.Fatal(errs)
		}
		udpOnLoop(t, s, key)
		c := udpClient(t, s.Addr(key).String())
		c.Write([]byte("last"))
		buf := make([]byte, 64)
		up.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, from, err := up.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		// Its last words, then it exits.
		for range 3 {
			up.WriteToUDPAddrPort([]byte("bye"), from)
		}
		up.Close()
		c.Write([]byte("after"))
		for range 3 {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := c.Read(buf); err != nil || string(buf[:n]) != "bye" {
				t.Fatalf("round %d: the client got %q, %v", round, buf[:n], err)
			}
		}
		waitFor(t, "the refused flow to end", func() bool {
			return obs.flows.Load() == 1 && w.releases.Load() == 1
		})
		if w.wakes.Load() != 1 {
			t.Fatalf("round %d: %d leases, want the one flow's", round, w.wakes.Load())
		}
	}
}

// TestUDPFullFlowTableEvictsUnrepliedFlow: when an address holds as many
// flows as it may, a new client takes the place of the oldest flow that
// never carried a reply (addresses made up by a flood never get one);
// only when every flow has had a reply is the new client dropped, and
// counted.
func TestUDPFullFlowTableEvictsUnrepliedFlow(t *testing.T) {
	up, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var silent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<16)
		for {
			n, from, err := up.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == "silent" {
				silent.Add(1)
				continue
			}
			up.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		up.Close()
		wg.Wait()
	})
	for _, replied := range []bool{false, true} {
		silent.Store(0)
		w := newTestWaker(t)
		w.add("echo", &testApp{upstream: up.LocalAddr().(*net.UDPAddr).AddrPort()})
		s, _ := newServer(t, w)
		s.UDPMaxFlows = 4
		obs := &udpObs{}
		s.Observer = obs
		const key = "127.0.0.1:0/udp"
		if errs := s.Apply(map[string][]Route{key: {{App: "echo", FlowTimeout: time.Hour}}}); errs != nil {
			t.Fatal(errs)
		}
		udpOnLoop(t, s, key)
		addr := s.Addr(key).String()
		buf := make([]byte, 64)
		for range 4 {
			c := udpClient(t, addr)
			if !replied {
				c.Write([]byte("silent"))
				continue
			}
			c.Write([]byte("hello"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		if !replied {
			waitFor(t, "four silent flows", func() bool { return silent.Load() == 4 })
		}
		fifth := udpClient(t, addr)
		fifth.Write([]byte("hello"))
		if !replied {
			fifth.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := fifth.Read(buf); err != nil || string(buf[:n]) != "hello" {
				t.Errorf("a new client was not served in place of a silent flow: %q, %v", buf[:n], err)
			}
			waitFor(t, "the evicted flow to end", func() bool { return obs.flows.Load() == 1 && w.releases.Load() == 1 })
			if d := obs.dropped.Load(); d != 0 {
				t.Errorf("%d datagrams counted dropped, want none", d)
			}
			continue
		}
		waitFor(t, "the new client's datagram to be dropped", func() bool { return obs.dropped.Load() == 1 })
		fifth.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := fifth.Read(buf); err == nil {
			t.Error("a client past the bound was served while every flow had replies")
		}
		if f := obs.flows.Load(); f != 0 {
			t.Errorf("%d flows ended, want none evicted", f)
		}
	}
}

// udpFlowsOnLoop waits until the flows of key are ready and, on the event
// loop data path, owned by the loop with the waking goroutine's socket let
// go of (the waking goroutine makes a flow ready just after sending its
// last queued datagram, which may be answered first); it returns how many
// there are.
func udpFlowsOnLoop(t *testing.T, s *Server, key string) int {
	t.Helper()
	s.mu.Lock()
	l := s.udp.listeners[key]
	s.mu.Unlock()
	if l == nil {
		t.Fatalf("no UDP listener for %s", key)
	}
	onLoop := testDataPath != DataPathGoroutines
	n := 0
	waitFor(t, fmt.Sprintf("the flows to be ready, on an event loop: %v", onLoop), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		n = len(l.flows)
		for _, f := range l.flows {
			if !f.ready || (f.lp != nil) != onLoop || (onLoop && f.conn != nil) {
				return false
			}
		}
		return true
	})
	return n
}

// TestUDPHandOffWhileSending: clients send without pause while their
// flows wake and become ready (handed to the loop): every reply comes
// back, in order, none lost across the hand-off, and the flows end up on
// the event loop.
func TestUDPHandOffWhileSending(t *testing.T) {
	for iter := range 5 {
		if !handOffWhileSending(t, iter) {
			return
		}
	}
}

// handOffWhileSending is one round of TestUDPHandOffWhileSending; false
// if it failed.
func handOffWhileSending(t *testing.T, iter int) bool {
	const clients = 4
	w := newTestWaker(t)
	gate := make(chan struct{})
	w.add("echo", &testApp{upstream: startUDPEcho(t), gate: gate})
	s, _ := newServer(t, w)
	obs := &udpObs{}
	s.Observer = obs
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "echo", MaxPending: 60000, FlowTimeout: time.Hour}}}); errs != nil {
		t.Fatal(errs)
	}
	udpOnLoop(t, s, key)
	addr := s.Addr(key).String()
	var stop atomic.Bool
	var wg sync.WaitGroup
	sent := make([]atomic.Int64, clients)
	got := make([]atomic.Int64, clients)
	conns := make([]*net.UDPConn, clients)
	defer func() { // on a failure too, before the clients close
		stop.Store(true)
		for _, c := range conns {
			if c != nil {
				c.SetReadDeadline(time.Now())
			}
		}
		wg.Wait()
	}()
	for i := range clients {
		c := udpClient(t, addr)
		conns[i] = c
		wg.Add(2)
		go func() {
			defer wg.Done()
			for seq := 0; !stop.Load(); seq++ {
				if _, err := c.Write(numbered(i, seq)); err != nil {
					t.Error(err)
					return
				}
				sent[i].Store(int64(seq + 1))
				if seq%4 == 3 {
					time.Sleep(200 * time.Microsecond) // a pace the echo keeps up with, not a wait
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<16)
			for next := 0; ; next++ {
				ci, seq, err := readNumbered(c, buf, 10*time.Second)
				if err != nil {
					return
				}
				if ci != i || seq != next {
					t.Errorf("iter %d client %d: reply (%d, %d), want (%d, %d)", iter, i, ci, seq, i, next)
					return
				}
				got[i].Store(int64(next + 1))
			}
		}()
	}
	waitFor(t, "datagrams queued while the app wakes", func() bool {
		for i := range sent {
			if sent[i].Load() < 4 {
				return false
			}
		}
		return w.waiting.Load() == clients
	})
	close(gate)
	// Go on sending until every client has had replies to datagrams
	// sent after the flows became ready.
	var mark [clients]int64
	waitFor(t, "replies from the queues", func() bool {
		for i := range got {
			if got[i].Load() == 0 {
				return false
			}
		}
		return true
	})
	for i := range mark {
		mark[i] = sent[i].Load()
	}
	waitFor(t, "replies past the hand-off", func() bool {
		for i := range got {
			if got[i].Load() < mark[i]+100 {
				return t.Failed()
			}
		}
		return true
	})
	stop.Store(true)
	waitFor(t, "every reply", func() bool {
		for i := range got {
			if got[i].Load() != sent[i].Load() && !t.Failed() {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	for _, c := range conns {
		c.SetReadDeadline(time.Now())
	}
	wg.Wait()
	if n := udpFlowsOnLoop(t, s, key); n != clients {
		t.Errorf("iter %d: %d flows, want %d", iter, n, clients)
	}
	if d := obs.dropped.Load(); d != 0 {
		t.Errorf("iter %d: %d datagrams dropped", iter, d)
	}
	return !t.Failed()
}

// TestUDPListenerOfEndedLoopReceivesInGoroutine: a UDP listener handed to
// an event loop that has ended (its epoll failed) is taken back and
// received on by a goroutine of its own: its clients are served, and
// Shutdown still ends it.
func TestUDPListenerOfEndedLoopReceivesInGoroutine(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{upstream: startUDPEcho(t)})
	s, _ := newServer(t, w)
	obs := &udpObs{}
	s.Observer = obs
	s.mu.Lock()
	loops := s.eventLoopsLocked()
	s.mu.Unlock()
	if testDataPath != DataPathGoroutines && len(loops) == 0 {
		t.Fatal("no event loops")
	}
	for _, lp := range loops {
		// As shutdownLoop leaves it, with its goroutine still running
		// so that Shutdown stops it as usual.
		lp.mu.Lock()
		lp.dead = true
		lp.mu.Unlock()
	}
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "echo", FlowTimeout: 50 * time.Millisecond}}}); errs != nil {
		t.Fatal(errs)
	}
	s.mu.Lock()
	l := s.udp.listeners[key]
	s.mu.Unlock()
	l.fdMu.Lock()
	onLoop := l.loop != nil
	l.fdMu.Unlock()
	if onLoop {
		t.Error("the listener stayed with an ended loop")
	}
	c := udpClient(t, s.Addr(key).String())
	buf := make([]byte, 1<<16)
	for seq := range 3 {
		c.Write(numbered(1, seq))
		if ci, got, err := readNumbered(c, buf, 10*time.Second); err != nil || ci != 1 || got != seq {
			t.Fatalf("reply (%d, %d), %v; want (1, %d)", ci, got, err, seq)
		}
	}
	waitFor(t, "the flow to end", func() bool { return obs.flows.Load() == 1 && w.releases.Load() == 1 })
}
