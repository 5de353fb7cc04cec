package l4

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// earlyWaker is testWaker as an EarlyWaker: it tells told (while the
// app's Wake is held at its gate) before it returns the app's upstream.
type earlyWaker struct {
	*testWaker
	told netip.AddrPort
}

func (w *earlyWaker) WakeEarly(ctx context.Context, app string, early func(netip.AddrPort)) (netip.AddrPort, func(), error) {
	early(w.told)
	return w.Wake(ctx, app)
}

// connectedTo counts the UDP sockets of this machine connected to ap, as
// /proc/net/udp lists them (IPv4).
func connectedTo(t *testing.T, ap netip.AddrPort) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	a := ap.Addr().As4()
	want := fmt.Sprintf("%08X:%04X", binary.LittleEndian.Uint32(a[:]), ap.Port())
	n := 0
	for _, l := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 2 && f[2] == want {
			n++
		}
	}
	return n
}

// TestUDPFlowConnectsWhileTheAppStarts: a flow woken through an
// EarlyWaker has its socket connected to the upstream it was told while
// the app starts, and carries the first datagram over it; told another
// upstream than the one it is leased, it lets that socket go and
// connects to the right one.
func TestUDPFlowConnectsWhileTheAppStarts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrong bool // told an upstream other than the lease's
	}{{"told the upstream", false}, {"told another upstream", true}} {
		t.Run(tc.name, func(t *testing.T) {
			echo := startUDPEcho(t)
			w := &earlyWaker{testWaker: newTestWaker(t), told: echo}
			if tc.wrong {
				w.told = startUDPEcho(t)
			}
			w.noTry.Store(true)
			gate := make(chan struct{})
			w.add("dns", &testApp{upstream: echo, gate: gate})
			s, _ := newServer(t, w)
			const key = "127.0.0.1:0/udp"
			if errs := s.Apply(map[string][]Route{key: {{App: "dns", FlowTimeout: time.Minute}}}); errs != nil {
				t.Fatal(errs)
			}
			c := udpClient(t, s.Addr(key).String())
			if _, err := c.Write([]byte("first")); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, func() bool { return w.waiting.Load() == 1 }, "the wake is not held")
			if n := connectedTo(t, w.told); n != 1 {
				t.Fatalf("%d sockets connected to the upstream told while the app starts, want 1", n)
			}
			close(gate)
			buf := make([]byte, 64)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "first" {
				t.Fatalf("reply %q, %v; want the first datagram back", buf[:n], err)
			}
			if tc.wrong {
				testutil.Eventually(t, 10*time.Second, func() bool { return connectedTo(t, w.told) == 0 },
					"the socket connected to the wrong upstream is still open")
			}
			if n := connectedTo(t, echo); n != 1 {
				t.Fatalf("%d sockets connected to the upstream leased, want the flow's", n)
			}
		})
	}
}
