package l4

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// answerFirst reads the n bytes a client opens with, answers one byte and
// closes first (see answerAndClose).
func answerFirst(n int) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err == nil {
			c.Write(buf[:1])
		}
	}
}

// sharedBenchTarget is a Server in front of one backend reached through
// routes ("plain": the address's only, default route; "host"/"sni": a name
// among others on a shared address), or the backend itself ("direct").
func sharedBenchTarget(b *testing.B, kind string, first []byte) string {
	be := startBackend(b, answerFirst(len(first)))
	if kind == "direct" {
		return be.ln.Addr().String()
	}
	w := newTestWaker(b)
	w.add("bench", &testApp{upstream: be.addrPort()})
	s := &Server{Waker: w, Logger: slog.New(slog.DiscardHandler), DataPath: testDataPath}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	routes := map[string][]Route{
		"plain": {{App: "bench"}},
		"host":  {{App: "other", Host: []string{"other.example.test", "*.x.example.test"}}, {App: "bench", Host: []string{"bench.example.test"}}},
		"sni":   {{App: "other", SNI: []string{"other.example.test", "*.x.example.test"}}, {App: "bench", SNI: []string{"bench.example.test"}}},
	}[kind]
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": routes}); errs != nil {
		b.Fatal(errs)
	}
	return s.Addr("127.0.0.1:0").String()
}

// BenchmarkSharedAcceptDialClose is BenchmarkAcceptDialClose with a first
// message a client would send: an HTTP request (direct, plain, host) or a
// real ClientHello (sni-direct, sni). plain against direct is the proxy's
// cost without peeking; host and sni against plain is the cost of peeking
// and routing by name.
func BenchmarkSharedAcceptDialClose(b *testing.B) {
	req := []byte(httpRequest("bench.example.test"))
	hello := captureClientHello(b, "bench.example.test")
	for _, c := range []struct {
		name, kind string
		first      []byte
	}{
		{"direct", "direct", req},
		{"plain", "plain", req},
		{"host", "host", req},
		{"sni-direct", "direct", hello},
		{"sni-plain", "plain", hello},
		{"sni", "sni", hello},
	} {
		b.Run(c.name, func(b *testing.B) {
			addr := sharedBenchTarget(b, c.kind, c.first)
			b.SetParallelism(4)
			b.ResetTimer()
			defer measureCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 2)
				for pb.Next() {
					nc, err := net.Dial("tcp", addr)
					if err != nil {
						b.Error(err)
						return
					}
					n := 0
					if _, err = nc.Write(c.first); err == nil {
						n, err = io.ReadFull(nc, buf)
					}
					nc.Close()
					if err != io.ErrUnexpectedEOF || n != 1 {
						b.Errorf("got %d bytes then %v, want 1 byte then EOF", n, err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSniff is the parsing alone, per connection.
func BenchmarkSniff(b *testing.B) {
	hello := captureClientHello(b, "bench.example.test")
	req := []byte(httpRequest("bench.example.test"))
	rs := newRouteSet([]Route{
		{App: "other", SNI: []string{"other.example.test", "*.x.example.test"}, Host: []string{"other.example.test"}},
		{App: "bench", SNI: []string{"bench.example.test"}, Host: []string{"bench.example.test"}},
	})
	b.Run("tls", func(b *testing.B) {
		for b.Loop() {
			name, _ := sniffTLS(hello)
			if rs.match(protoTLS, name) != 1 {
				b.Fatal("no match")
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		for b.Loop() {
			name, _ := sniffHTTP(req)
			if rs.match(protoHTTP, name) != 1 {
				b.Fatal("no match")
			}
		}
	})
}
