package l4

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// udpOnLoop reports whether the UDP listener of key is served by an event
// loop, and fails the test if that is not what the data path asks for.
func udpOnLoop(t *testing.T, s *Server, key string) {
	t.Helper()
	s.mu.Lock()
	l := s.udp.listeners[key]
	s.mu.Unlock()
	if l == nil {
		t.Fatalf("no UDP listener for %s", key)
	}
	if want := testDataPath != DataPathGoroutines; (l.loop != nil) != want {
		t.Fatalf("listener on an event loop: %v, want %v (data path %q)", l.loop != nil, want, testDataPath)
	}
}

// TestUDPWarmFlowsInOrderAndTimeOut: clients of a ready app, each with
// datagrams in flight, get every reply, in order, and only their own;
// their flows end after the flow timeout, leases given back, and a later
// datagram makes a new flow that is served.
func TestUDPWarmFlowsInOrderAndTimeOut(t *testing.T) {
	const (
		clients = 10
		count   = 1000
		window  = 32
	)
	w := newTestWaker(t)
	w.add("echo", &testApp{upstream: startUDPEcho(t)})
	s, _ := newServer(t, w)
	obs := &udpObs{}
	s.Observer = obs
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "echo", FlowTimeout: 200 * time.Millisecond}}}); errs != nil {
		t.Fatal(errs)
	}
	udpOnLoop(t, s, key)
	addr := s.Addr(key).String()
	conns := make([]*net.UDPConn, clients)
	for i := range conns {
		conns[i] = udpClient(t, addr)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<16)
			sent := 0
			for got := 0; got < count; got++ {
				for sent < count && sent-got < window {
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
	if t.Failed() {
		return
	}
	waitFor(t, "every flow to time out", func() bool { return obs.flows.Load() == clients })
	if got := w.releases.Load(); got != clients || w.tryWakes.Load() != clients {
		t.Errorf("%d leases taken, %d released, want %d each", w.tryWakes.Load(), got, clients)
	}
	if want := int64(64 * clients * count); obs.sent.Load() != want || obs.received.Load() != want {
		t.Errorf("flows counted %d bytes sent and %d received, want %d each", obs.sent.Load(), obs.received.Load(), want)
	}
	if obs.dropped.Load() != 0 {
		t.Errorf("%d datagrams dropped on loopback", obs.dropped.Load())
	}
	buf := make([]byte, 1<<16)
	conns[0].Write(numbered(0, 7))
	if ci, seq, err := readNumbered(conns[0], buf, 10*time.Second); err != nil || ci != 0 || seq != 7 {
		t.Errorf("after the timeout: reply (%d, %d), %v; want (0, 7)", ci, seq, err)
	}
	if w.tryWakes.Load() != clients+1 {
		t.Errorf("%d leases after a new datagram, want %d: a new flow", w.tryWakes.Load(), clients+1)
	}
}

// TestUDPShutdownEndsFlows: Shutdown ends the flows of every kind (warm,
// woken, still waking), gives back their leases, reports them, and frees
// the address.
func TestUDPShutdownEndsFlows(t *testing.T) {
	w := newTestWaker(t)
	w.add("warm", &testApp{upstream: startUDPEcho(t)})
	gate := make(chan struct{})
	w.add("cold", &testApp{upstream: startUDPEcho(t), gate: gate})
	stuck := make(chan struct{})
	defer close(stuck)
	w.add("stuck", &testApp{upstream: startUDPEcho(t), gate: stuck})
	s := &Server{Waker: w, DataPath: testDataPath, EventLoops: 2}
	obs := &udpObs{}
	s.Observer = obs
	keys := map[string]string{"warm": "127.0.0.1:0/udp", "cold": "127.0.0.2:0/udp", "stuck": "127.0.0.3:0/udp"}
	table := map[string][]Route{}
	for app, key := range keys {
		table[key] = []Route{{App: app}}
	}
	if errs := s.Apply(table); errs != nil {
		t.Fatal(errs)
	}
	addrs := map[string]string{}
	for app, key := range keys {
		udpOnLoop(t, s, key)
		addrs[app] = s.Addr(key).String()
	}
	buf := make([]byte, 1<<16)
	warm := udpClient(t, addrs["warm"])
	warm.Write(numbered(1, 1))
	if _, _, err := readNumbered(warm, buf, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cold := udpClient(t, addrs["cold"])
	cold.Write(numbered(2, 1))
	waitFor(t, "the cold app's wake", func() bool { return w.waiting.Load() == 1 })
	close(gate)
	if _, _, err := readNumbered(cold, buf, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	udpClient(t, addrs["stuck"]).Write(numbered(3, 1))
	waitFor(t, "the stuck app's wake", func() bool { return w.waiting.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if obs.flows.Load() != 2 || w.releases.Load() != 2 {
		t.Errorf("after Shutdown: %d flows reported, %d leases released; want 2 each", obs.flows.Load(), w.releases.Load())
	}
	if obs.dropped.Load() != 1 {
		t.Errorf("%d datagrams dropped, want the stuck app's 1", obs.dropped.Load())
	}
	for app, addr := range addrs {
		ua, _ := net.ResolveUDPAddr("udp", addr)
		c, err := net.ListenUDP("udp", ua)
		if err != nil {
			t.Errorf("%s's address %s is still taken after Shutdown: %v", app, addr, err)
			continue
		}
		c.Close()
	}
}

// TestUDPRemovedAddressIsFreeAtOnce: once Apply drops a UDP address, it
// can be bound again, by another table or another program, at once.
func TestUDPRemovedAddressIsFreeAtOnce(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{upstream: startUDPEcho(t)})
	s, _ := newServer(t, w)
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0/udp": {{App: "echo"}}}); errs != nil {
		t.Fatal(errs)
	}
	udpOnLoop(t, s, "127.0.0.1:0/udp")
	addr := s.Addr("127.0.0.1:0/udp").String()
	c := udpClient(t, addr)
	buf := make([]byte, 1<<16)
	c.Write(numbered(0, 0))
	if _, _, err := readNumbered(c, buf, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if errs := s.Apply(map[string][]Route{}); errs != nil {
		t.Fatal(errs)
	}
	ua, _ := net.ResolveUDPAddr("udp", addr)
	other, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatalf("the removed address %s is still taken: %v", addr, err)
	}
	other.Close()
	key := addr + "/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "echo"}}}); errs != nil {
		t.Fatalf("binding the removed address again: %v", errs)
	}
	c.Write(numbered(0, 1))
	if _, seq, err := readNumbered(c, buf, 10*time.Second); err != nil || seq != 1 {
		t.Errorf("through the address bound again: seq %d, %v", seq, err)
	}
}

// TestUDPFlowEndsWhenUpstreamIsGone: a flow whose program's socket has
// closed ends (the kernel refuses its datagrams), its lease given back.
func TestUDPFlowEndsWhenUpstreamIsGone(t *testing.T) {
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
	if errs := s.Apply(map[string][]Route{key: {{App: "echo"}}}); errs != nil {
		t.Fatal(errs)
	}
	udpOnLoop(t, s, key)
	c := udpClient(t, s.Addr(key).String())
	c.Write([]byte("one"))
	buf := make([]byte, 64)
	up.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := up.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "one" {
		t.Fatalf("the program got %q, %v", buf[:n], err)
	}
	up.WriteToUDPAddrPort([]byte("reply"), from)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "reply" {
		t.Fatalf("the client got %q, %v", buf[:n], err)
	}
	up.Close()
	// Each datagram to the closed port earns an ICMP refusal, which the
	// flow's next send or receive reports; send until the flow ends.
	waitFor(t, "the flow to end", func() bool {
		c.Write([]byte("two"))
		return obs.flows.Load() >= 1
	})
	// Later datagrams may have made new flows, refused in turn.
	waitFor(t, "every lease to be given back", func() bool {
		return w.releases.Load() == w.tryWakes.Load() && obs.flows.Load() == w.tryWakes.Load()
	})
}

// TestUDPOverIPv6: a listener and an upstream on ::1 carry datagrams both
// ways, the replies sent to the IPv6 client's address.
func TestUDPOverIPv6(t *testing.T) {
	upAddr := startUDPServer(t, net.IPv6loopback, nil)
	w := newTestWaker(t)
	w.add("echo", &testApp{upstream: upAddr})
	s, _ := newServer(t, w)
	const key = "[::1]:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "echo"}}}); errs != nil {
		t.Fatal(errs)
	}
	udpOnLoop(t, s, key)
	c := udpClient(t, s.Addr(key).String())
	buf := make([]byte, 1<<16)
	for seq := range 10 {
		c.Write(numbered(6, seq))
		if ci, got, err := readNumbered(c, buf, 10*time.Second); err != nil || ci != 6 || got != seq {
			t.Fatalf("reply (%d, %d), %v; want (6, %d)", ci, got, err, seq)
		}
	}
}
