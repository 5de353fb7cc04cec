package l4

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"
)

// benchTarget returns the address a benchmark client dials: the backend
// itself ("direct") or a Server in front of it ("proxy").
func benchTarget(b *testing.B, proxied bool, handler func(*net.TCPConn)) string {
	b.Helper()
	be := startBackend(b, handler)
	if !proxied {
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
	return listenOne(b, s, "bench")
}

// cpuTime is the CPU time this process used so far, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureCPU reports the process's CPU time per op from now until the
// returned function is called: client, backend and (through the proxy) the
// Server together. Unlike ns/op it holds on a busy machine, and the
// proxy's cost is the difference between the proxy and direct runs.
func measureCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() {
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	}
}

func bothWays(b *testing.B, f func(b *testing.B, proxied bool)) {
	b.Run("direct", func(b *testing.B) { f(b, false) })
	b.Run("proxy", func(b *testing.B) { f(b, true) })
}

// sink reads until EOF and answers with the byte count.
func sink(c *net.TCPConn) {
	n, _ := io.Copy(io.Discard, c)
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(n))
	c.Write(buf[:])
}

// BenchmarkBulk streams one way through one connection, 256 KiB per op.
func BenchmarkBulk(b *testing.B) {
	bothWays(b, func(b *testing.B, proxied bool) {
		addr := benchTarget(b, proxied, sink)
		c := dialTCP(b, addr)
		chunk := make([]byte, 256<<10)
		b.SetBytes(int64(len(chunk)))
		b.ResetTimer()
		defer measureCPU(b)()
		for range b.N {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		c.CloseWrite()
		var buf [8]byte
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got, want := binary.BigEndian.Uint64(buf[:]), uint64(b.N*len(chunk)); got != want {
			b.Fatalf("backend got %d bytes, want %d", got, want)
		}
	})
}

// BenchmarkRequestResponse exchanges 100-byte messages over keep-alive
// connections, 50 of them in parallel like `wrk -c50`.
func BenchmarkRequestResponse(b *testing.B) {
	bothWays(b, func(b *testing.B, proxied bool) {
		addr := benchTarget(b, proxied, echo)
		b.SetBytes(100)
		b.SetParallelism(25) // 50 connections on 2 cores
		b.ResetTimer()
		defer measureCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer nc.Close()
			msg := make([]byte, 100)
			for pb.Next() {
				if _, err := nc.Write(msg); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(nc, msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// answerAndClose answers one byte with one byte and closes first, as an
// HTTP/1.0 server does: TIME_WAIT then lands on the accepting sides and the
// clients' ephemeral ports stay free, so the benchmark measures the proxy
// rather than the exhaustion of the port range.
func answerAndClose(c *net.TCPConn) {
	one := make([]byte, 1)
	if _, err := io.ReadFull(c, one); err == nil {
		c.Write(one)
	}
}

// BenchmarkAcceptDialClose opens a connection, exchanges one byte each way
// and waits for the server's close, per op, from 8 clients in parallel.
func BenchmarkAcceptDialClose(b *testing.B) {
	bothWays(b, func(b *testing.B, proxied bool) {
		addr := benchTarget(b, proxied, answerAndClose)
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
				if _, err = nc.Write(buf[:1]); err == nil {
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
