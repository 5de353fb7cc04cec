package l4

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exhaustDescriptors lowers the process's descriptor limit to just above
// the highest descriptor open and fills every free slot below it, so that
// the next socket, accepted or not, fails with EMFILE. restore gives the
// descriptors and the limit back; spare frees one descriptor.
func exhaustDescriptors(t *testing.T) (restore, spare func()) {
	t.Helper()
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	highest := 0
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil {
			highest = max(highest, fd)
		}
	}
	low := orig
	low.Cur = uint64(highest) + 1
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var fillers []int
	restore = func() {
		for _, fd := range fillers {
			syscall.Close(fd)
		}
		fillers = nil
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restoring the descriptor limit: %v", err)
		}
	}
	for range highest + 1 {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if errors.Is(err, syscall.EMFILE) {
			spare = func() {
				syscall.Close(fillers[len(fillers)-1])
				fillers = fillers[:len(fillers)-1]
			}
			return restore, spare
		}
		if err != nil {
			restore()
			t.Fatalf("filling the descriptor table: %v", err)
		}
		fillers = append(fillers, fd)
	}
	restore()
	t.Fatal("the descriptor table never filled up")
	return nil, nil
}

// A real EMFILE, on whichever data path the suite runs: with the event loop
// the loop accepts (and pauses the listener for its backoff), with
// goroutines the accept loop through Go's Accept. The test lowers the descriptor limit of its own process, so it
// runs in a child process (runAlone), alone.
func TestAcceptLoopBacksOffOnEMFILEAndKeepsServing(t *testing.T) {
	if !runAlone(t) {
		return
	}
	w := twoApps(t)
	s, logs := newServer(t, w)
	s.AcceptBackoffMin = time.Millisecond
	s.AcceptBackoffMax = 4 * time.Millisecond
	s.ErrorLogInterval = time.Hour // one line for the whole burst
	addr := listenOne(t, s, "aaa")
	s.mu.Lock()
	inLoop := s.listeners["127.0.0.1:0"].inLoop
	s.mu.Unlock()
	if want := testDataPath != DataPathGoroutines; inLoop != want {
		t.Fatalf("the event loop accepts: %v, want %v on data path %q", inLoop, want, testDataPath)
	}

	// The client's socket exists before the table is full: connecting
	// it needs no new descriptor on the client's side.
	cfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	client := os.NewFile(uintptr(cfd), "client")
	t.Cleanup(func() { client.Close() })
	ap := netip.MustParseAddrPort(addr)
	restore, _ := exhaustDescriptors(t)
	t.Cleanup(restore) // before the server's shutdown
	if err := syscall.Connect(cfd, &syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		t.Fatalf("connecting: %v", err)
	}
	waitFor(t, "accept backing off", func() bool { return strings.Contains(logs.String(), "backing off") })
	restore()
	if l := logs.String(); !strings.Contains(l, "too many open files") {
		t.Fatalf("backing off, but not on EMFILE:\n%s", l)
	}

	// The loop retries after its pause and serves the waiting client.
	nc, err := net.FileConn(client)
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*net.TCPConn)
	t.Cleanup(func() { c.Close() })
	if got := readName(t, c, 3); got != "aaa" {
		t.Errorf("routed to %q, want aaa", got)
	}
	roundTrip(t, c, "served after EMFILE")
	if got := readName(t, dialTCP(t, addr), 3); got != "aaa" {
		t.Errorf("next connection routed to %q, want aaa", got)
	}
	if n := strings.Count(logs.String(), "backing off"); n != 1 {
		t.Errorf("%d backing-off lines within the log interval, want 1:\n%s", n, logs)
	}
}

// The attack: under EMFILE a client was accepted, then closed when the
// dial to its app found no descriptor left. Now the connection is held
// and the dial retried until a descriptor is free (within the route's
// StartTimeout): the client is served, nothing is closed. One descriptor
// is left for the accept, none for the dial; in a process of its own.
func TestADialWithoutDescriptorsIsRetriedNotClosed(t *testing.T) {
	if !runAlone(t) {
		return
	}
	w := twoApps(t)
	s, logs := newServer(t, w)
	failed := make(chan struct{}, 1)
	s.dialErrorHook = func(err error) {
		if noDescriptors(err) {
			select {
			case failed <- struct{}{}:
			default:
			}
		}
	}
	addr := listenOne(t, s, "aaa")
	// The app's program is up (the backend listens) before the table is
	// full: only the proxy's dial lacks a descriptor.
	warm := dialTCP(t, addr)
	if got := readName(t, warm, 3); got != "aaa" {
		t.Fatalf("routed to %q, want aaa", got)
	}
	warm.Close()
	// Nothing of it may still be closing while the table is filled.
	waitFor(t, "the warm-up connection closed", func() bool { return strings.Contains(logs.String(), "connection closed") })
	_, client, restore := connectWithoutDescriptors(t, addr)
	select {
	case <-failed:
	case <-time.After(20 * time.Second):
		restore()
		t.Fatalf("no dial failed for lack of descriptors:\n%s", logs)
	}
	restore()
	nc, err := net.FileConn(client)
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*net.TCPConn)
	t.Cleanup(func() { c.Close() })
	if got := readName(t, c, 3); got != "aaa" {
		t.Fatalf("routed to %q, want aaa; log:\n%s", got, logs)
	}
	roundTrip(t, c, "served once descriptors were back")
	if l := logs.String(); strings.Contains(l, "closing connection") {
		t.Errorf("a connection was closed:\n%s", l)
	}
}

// The same on an address shared by name: the connection is wrapped for
// Go to peek at its Host, which takes a descriptor more. Without one the
// client was closed; now it is held and the wrap tried again.
func TestAPeekWithoutDescriptorsIsRetriedNotClosed(t *testing.T) {
	if testDataPath == DataPathGoroutines {
		t.Skip("Go's Accept returns a Go socket: there is nothing to wrap on this data path")
	}
	if !runAlone(t) {
		return
	}
	w := twoApps(t)
	s, logs := newServer(t, w)
	failed := make(chan struct{}, 1)
	s.noFdHook = func() {
		select {
		case failed <- struct{}{}:
		default:
		}
	}
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {
		{App: "aaa", Host: []string{"a.test"}},
		{App: "bbb", Host: []string{"b.test"}},
	}}); errs != nil {
		t.Fatal(errs)
	}
	addr := s.Addr("127.0.0.1:0").String()
	const request = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"
	warm := dialTCP(t, addr)
	if _, err := warm.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	if got := readName(t, warm, 3); got != "aaa" {
		t.Fatalf("routed to %q, want aaa", got)
	}
	warm.Close()
	// Nothing of it may still be closing while the table is filled.
	waitFor(t, "the warm-up connection closed", func() bool { return strings.Contains(logs.String(), "connection closed") })
	cfd, client, restore := connectWithoutDescriptors(t, addr)
	if _, err := syscall.Write(cfd, []byte(request)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-failed:
	case <-time.After(20 * time.Second):
		restore()
		t.Fatalf("no wrap failed for lack of descriptors:\n%s", logs)
	}
	restore()
	nc, err := net.FileConn(client)
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*net.TCPConn)
	t.Cleanup(func() { c.Close() })
	if got := readName(t, c, 3); got != "aaa" {
		t.Fatalf("routed to %q, want aaa; log:\n%s", got, logs)
	}
	if l := logs.String(); strings.Contains(l, "closing connection") {
		t.Errorf("a connection was closed:\n%s", l)
	}
}

// connectWithoutDescriptors fills the descriptor table but for what the
// test's own code needs (exhaustDescriptors), then connects a client,
// made beforehand, to addr: the server handles it without a descriptor
// to spare. restore gives the table back (also at the test's end); client
// is the socket cfd as a file.
func connectWithoutDescriptors(t *testing.T, addr string) (cfd int, client *os.File, restore func()) {
	t.Helper()
	cfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	client = os.NewFile(uintptr(cfd), "client")
	t.Cleanup(func() { client.Close() })
	ap := netip.MustParseAddrPort(addr)
	restore, spare := exhaustDescriptors(t)
	t.Cleanup(restore)
	spare()
	if err := syscall.Connect(cfd, &syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		t.Fatalf("connecting: %v", err)
	}
	return cfd, client, restore
}
