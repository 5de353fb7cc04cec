package lifecycle

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"

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
