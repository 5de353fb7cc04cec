package l4

import (
	"context"
	"log/slog"

	"testing"
	"time"
)

// udpBenchTarget is the address a UDP benchmark client sends to: the echo
// program itself ("direct") or a Server in front of it ("proxy").
func udpBenchTarget(b *testing.B, proxied bool) string {
	b.Helper()
	up := startUDPEcho(b)
	if !proxied {
		return up.String()
	}
	w := newTestWaker(b)
	w.add("bench", &testApp{upstream: up})
	s := &Server{Waker: w, Logger: slog.New(slog.DiscardHandler), DataPath: testDataPath}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "bench"}}}); errs != nil {
		b.Fatal(errs)
	}
	return s.Addr(key).String()
}

// BenchmarkUDPRoundTrip: one client, one 64-byte datagram and its reply
// at a time: the latency DynaPM adds (ns/op) and its CPU (cpu-ns/op,
// the whole process: client, echo and Server).
func BenchmarkUDPRoundTrip(b *testing.B) {
	bothWays(b, func(b *testing.B, proxied bool) {
		c := udpClient(b, udpBenchTarget(b, proxied))
		msg, buf := make([]byte, 64), make([]byte, 1<<16)
		c.Write(msg)
		c.Read(buf) // the flow is up
		done := measureCPU(b)
		b.ResetTimer()
		for b.Loop() {
			c.Write(msg)
			if _, err := c.Read(buf); err != nil {
				b.Fatal(err)
			}
		}
		done()
	})
}

// BenchmarkUDPStream: one client keeps 32 datagrams in flight: the rate
// (ns/op is per datagram and reply) and CPU per datagram when batches fill.
func BenchmarkUDPStream(b *testing.B) {
	bothWays(b, func(b *testing.B, proxied bool) {
		const window = 32
		c := udpClient(b, udpBenchTarget(b, proxied))
		msg, buf := make([]byte, 64), make([]byte, 1<<16)
		done := measureCPU(b)
		b.ResetTimer()
		sent, got := 0, 0
		for got < b.N {
			for sent < b.N && sent-got < window {
				c.Write(msg)
				sent++
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := c.Read(buf); err != nil {
				// A datagram lost on a busy machine: count it and go on.
				got = sent
				continue
			}
			got++
		}
		done()
	})
}
