package l4

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// handoffWaker hands an app's sockets off: each Handoff is reported on
// calls with the channel that the test closes to say the program is gone.
type handoffWaker struct {
	calls chan chan struct{}
	err   error
}

func newHandoffWaker() *handoffWaker { return &handoffWaker{calls: make(chan chan struct{}, 8)} }

func (w *handoffWaker) Wake(context.Context, string) (netip.AddrPort, func(), error) {
	return netip.AddrPort{}, nil, errors.New("a handed-off app is never proxied")
}

func (w *handoffWaker) Handoff(ctx context.Context, app string) (<-chan struct{}, error) {
	if w.err != nil {
		return nil, w.err
	}
	gone := make(chan struct{})
	select {
	case w.calls <- gone:
		return gone, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (w *handoffWaker) next(t *testing.T) chan struct{} {
	t.Helper()
	select {
	case gone := <-w.calls:
		return gone
	case <-time.After(10 * time.Second):
		t.Fatal("no Handoff")
		return nil
	}
}

// socketDescriptors counts this process's descriptors that refer to the
// listening socket of addr: the listener's own, and one more while it is
// watched (a duplicate registered with the netpoller for the wait).
func socketDescriptors(t *testing.T, s *Server, addr string) int {
	t.Helper()
	s.mu.Lock()
	fd := s.listeners[addr].fd
	var st syscall.Stat_t
	err := syscall.Fstat(fd, &st)
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	want := "socket:[" + strconv.FormatUint(st.Ino, 10) + "]"
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, _ := os.Readlink("/proc/self/fd/" + e.Name()); target == want {
			n++
		}
	}
	return n
}

func TestHandedOffSocketIsLeftToTheProgramWhileItRuns(t *testing.T) {
	w := newHandoffWaker()
	s, _ := newServer(t, w)
	const key = "127.0.0.1:0"
	if errs := s.Apply(map[string][]Route{key: {{App: "web", Handoff: HandoffSocket}}}); errs != nil {
		t.Fatal(errs)
	}
	addr := s.Addr(key).String()
	waitFor(t, "the socket watched", func() bool { return socketDescriptors(t, s, key) == 2 })

	dialTCP(t, addr)
	gone := w.next(t)
	// The program runs: the socket is not watched, not accepted from.
	waitFor(t, "the watch dropped", func() bool { return socketDescriptors(t, s, key) == 1 })
	dialTCP(t, addr)
	dialTCP(t, addr)

	// What the program gets: every connection waits in the backlog for it.
	files, err := s.ListenFiles([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(files[0])
	files[0].Close()
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 3 {
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("the program's accept %d: %v", i+1, err)
		}
		c.Close()
	}
	ln.Close()
	select {
	case <-w.calls:
		t.Fatal("Handoff again while the program runs")
	default:
	}

	// The program is gone: watched again, and the next connection starts
	// it again.
	close(gone)
	waitFor(t, "the socket watched again", func() bool { return socketDescriptors(t, s, key) == 2 })
	dialTCP(t, addr)
	close(w.next(t))
}

func TestFailedHandoffClosesTheWaitingConnections(t *testing.T) {
	w := newHandoffWaker()
	w.err = errors.New("backing off")
	s, logs := newServer(t, w)
	const key = "127.0.0.1:0"
	if errs := s.Apply(map[string][]Route{key: {{App: "web", Handoff: HandoffSocket}}}); errs != nil {
		t.Fatal(errs)
	}
	c := dialTCP(t, s.Addr(key).String())
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Fatalf("read: %v, want the connection closed", err)
	}
	waitFor(t, "the failure logged", func() bool { return strings.Contains(logs.String(), "handing sockets off failed") })
}
