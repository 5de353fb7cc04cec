package l4

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestShutdownClosesHeldConnectionsAtOnce(t *testing.T) {
	w := newTestWaker(t)
	w.add("never", &testApp{gate: make(chan struct{}), start: func() *backend { return startBackend(t, echo) }})
	s := &Server{Waker: w, DataPath: testDataPath}
	addr := listenOne(t, s, "never")
	c := dialTCP(t, addr)
	c.Write([]byte("waiting"))
	waitFor(t, "connection held", func() bool { return w.waiting.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Shutdown waited for its deadline instead of closing the held connection")
	}
	if got := w.canceled.Load(); got != 1 {
		t.Errorf("%d wakes saw their context cancelled, want 1", got)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Errorf("held client read: %v, want EOF or reset", err)
	}
	if nc, err := net.Dial("tcp", addr); err == nil {
		nc.Close()
		t.Error("listener still accepts after Shutdown")
	}
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {{App: "never"}}}); !errors.Is(errs["127.0.0.1:0"], ErrServerClosed) {
		t.Errorf("Apply after Shutdown: %v, want ErrServerClosed", errs)
	}
}

func TestShutdownWaitsForSplicedConnections(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s := &Server{Waker: w, DataPath: testDataPath}
	addr := listenOne(t, s, "echo")
	c := dialTCP(t, addr)
	roundTrip(t, c, "before")

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	waitFor(t, "listener closed", func() bool {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	roundTrip(t, c, "during shutdown")
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a spliced connection was open", err)
	default:
	}
	c.CloseWrite()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last connection ended")
	}
	// The probe dials above may have been accepted just before the listener
	// closed; each of those is a connection of its own, so the check is that
	// every lease handed out was given back, not a fixed count.
	if rel, wakes := w.releases.Load(), w.wakes.Load(); rel != wakes || rel < 1 {
		t.Errorf("releases = %d, wakes = %d: want every lease (at least one) released", rel, wakes)
	}
}

func TestShutdownCutsSplicedConnectionsWhenContextEnds(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s := &Server{Waker: w, DataPath: testDataPath}
	c := dialTCP(t, listenOne(t, s, "echo"))
	roundTrip(t, c, "open")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want deadline exceeded", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Errorf("client read after cut: %v, want EOF or reset", err)
	}
	if got := w.releases.Load(); got != 1 {
		t.Errorf("releases = %d, want 1 (Shutdown returns after every connection ended)", got)
	}
}
