package l4

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/unixaddr"
)

// BenchmarkUnixRequestResponse exchanges 100-byte messages on one
// keep-alive connection: straight to a Unix echo server ("direct"),
// through a unix: listen to it ("unix-unix"), and through a TCP listen to
// it ("tcp-unix"); for comparison, through a TCP listen to a TCP echo
// server ("tcp-tcp"). The proxy's cost is the difference from direct.
func BenchmarkUnixRequestResponse(b *testing.B) {
	for _, mode := range []string{"direct", "unix-unix", "tcp-unix", "tcp-tcp"} {
		b.Run(mode, func(b *testing.B) {
			if mode == "tcp-tcp" {
				requestResponse(b, "tcp", benchTarget(b, true, echo))
				return
			}
			dir, err := os.MkdirTemp("", "ub")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
			up := filepath.Join(dir, "up.sock")
			ln, err := net.Listen("unix", up)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { io.Copy(c, c); c.Close() }()
				}
			}()
			b.Cleanup(func() { ln.Close(); <-done })
			network, addr := "unix", up
			if mode != "direct" {
				w := newTestWaker(b)
				w.add("bench", &testApp{upstream: netip.MustParseAddrPort("127.0.0.1:1")})
				s := &Server{Waker: w, Logger: slog.New(slog.DiscardHandler), DataPath: testDataPath}
				b.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					s.Shutdown(ctx)
				})
				key := "127.0.0.1:0"
				if mode == "unix-unix" {
					key = unixaddr.Prefix + filepath.Join(dir, "in.sock")
				}
				r := Route{App: "bench", Socket: SocketFile{Mode: 0o600, UID: -1, GID: -1}, UnixUpstream: up, UnixUpstreamUID: uint32(os.Geteuid())}
				if errs := s.Apply(map[string][]Route{key: {r}}); errs != nil {
					b.Fatal(errs)
				}
				network, addr = "tcp", s.Addr(key).String()
				if mode == "unix-unix" {
					network, addr = "unix", filepath.Join(dir, "in.sock")
				}
			}
			requestResponse(b, network, addr)
		})
	}
}

// requestResponse exchanges b.N 100-byte messages with addr on one
// connection.
func requestResponse(b *testing.B, network, addr string) {
	c, err := net.Dial(network, addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 100)
	b.SetBytes(100)
	b.ResetTimer()
	defer measureCPU(b)()
	for range b.N {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			b.Fatal(err)
		}
	}
}
