package lifecycle

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// The Manager satisfies l4.Waker (l4 is not imported here: the packages stay
// independent).
var _ interface {
	Wake(context.Context, string) (netip.AddrPort, func(), error)
} = (*Manager)(nil)

// BenchmarkWakeReady measures the warm path: leasing and releasing a ready
// app, as every proxied connection does.
func BenchmarkWakeReady(b *testing.B) {
	h := newHarness(b, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	h.m.Apply([]*appfile.Spec{h.spec("web")})
	_, release := h.wake("web")
	release()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, release, err := h.m.Wake(ctx, "web")
			if err != nil {
				b.Error(err)
				return
			}
			release()
		}
	})
	if st := h.status("web"); st.Starts != 1 || st.Connections != 0 {
		b.Fatalf("after benchmark: %s", fmtStatus(st))
	}
}

// BenchmarkColdWake measures a cold start to ready of testapp, the
// readiness probe included: on a port ($PORT, a TCP connect) and on a
// socket file ($SOCKET, a Unix connect). Each op starts and stops it.
func BenchmarkColdWake(b *testing.B) {
	for _, on := range []string{"port", "socket"} {
		b.Run(on, func(b *testing.B) {
			h := newHarness(b, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) })
			spec := h.spec("web")
			if on == "socket" {
				spec = h.spec("web", "-listen", "unix:${SOCKET}")
			}
			h.m.Apply([]*appfile.Spec{spec})
			ctx := context.Background()
			var ready time.Duration
			for range b.N {
				start := time.Now()
				_, release, err := h.m.Wake(ctx, "web")
				if err != nil {
					b.Fatal(err)
				}
				ready += time.Since(start)
				release()
				if err := h.m.Stop(ctx, "web", "manual"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(ready.Microseconds())/float64(b.N), "µs-to-ready/op")
		})
	}
}
