package l4

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/rawnet"
)

// handingWaker hands over, with every lease, a connection to the upstream
// it made itself, as lifecycle.Manager hands over its readiness probe's
// connection (ConnWaker).
type handingWaker struct {
	Waker
	handed atomic.Int64
}

func (w *handingWaker) WakeConn(ctx context.Context, app string) (netip.AddrPort, int, func(), error) {
	up, release, err := w.Wake(ctx, app)
	if err != nil {
		return up, -1, nil, err
	}
	fd, err := rawnet.Connect(ctx, up, time.Second)
	if err != nil {
		release()
		return up, -1, nil, err
	}
	w.handed.Add(1)
	return up, fd, release, nil
}

func TestHeldConnectionsUseTheConnectionTheWakerHandsOver(t *testing.T) {
	w := newTestWaker(t)
	var b atomic.Pointer[backend]
	w.add("echo", &testApp{start: func() *backend {
		b.Store(startBackend(t, echo))
		return b.Load()
	}})
	hw := &handingWaker{Waker: onlyWake{w}} // no TryWake: every connection is held
	s, _ := newServer(t, hw)
	addr := listenOne(t, s, "echo")
	const clients = 3
	for range clients {
		echoOneByte(t, dialTCP(t, addr))
	}
	if hw.handed.Load() != clients {
		t.Fatalf("the waker handed over %d connections, want %d", hw.handed.Load(), clients)
	}
	// On the event loop path the handed-over connection carries the
	// client; the goroutine path closes it and dials its own.
	want := int64(clients)
	if testDataPath == DataPathGoroutines {
		want = 2 * clients
	}
	waitFor(t, "the backend's accepts", func() bool { return b.Load().accepts.Load() >= want })
	if got := b.Load().accepts.Load(); got != want {
		t.Errorf("the backend accepted %d connections for %d clients, want %d", got, clients, want)
	}
}
