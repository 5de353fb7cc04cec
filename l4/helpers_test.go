package l4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
	"go.uber.org/goleak"
)

// testDataPath is the Server.DataPath every test server uses. TestMain runs
// the whole suite once per data path: with the default (the event loop),
// then again in a child process with L4_TEST_DATAPATH=goroutines.
var testDataPath = os.Getenv("L4_TEST_DATAPATH")

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak (data path %q): %v\n", testDataPath, err)
			code = 1
		}
	}
	if code == 0 && testDataPath == "" && os.Getenv(aloneEnv) == "" {
		if err := testutil.RerunSuite("=== l4: the same tests with DataPath goroutines", "L4_TEST_DATAPATH="+DataPathGoroutines); err != nil {
			fmt.Fprintf(os.Stderr, "suite with DataPath goroutines: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// aloneEnv names the one test that a re-executed test binary runs (see
// runAlone); the child inherits L4_TEST_DATAPATH, so it runs on the same
// data path as its parent.
const aloneEnv = "L4_TEST_ALONE"

// runAlone re-executes the test binary to run only the calling test, in a
// process of its own, for tests that change what the whole process may do
// (its descriptor limit, say). It returns true in that child, where the
// test goes on; in the parent it waits for the child, fails the test if the
// child failed, and returns false.
func runAlone(t *testing.T) bool {
	t.Helper()
	if os.Getenv(aloneEnv) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), aloneEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a process of its own: %v\n%s", t.Name(), err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("%s did not run in the child process:\n%s", t.Name(), out)
	}
	return false
}

// backend is a real in-process TCP server standing in for an app's program.
type backend struct {
	ln      net.Listener
	handler func(*net.TCPConn)
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[*net.TCPConn]struct{}
	accepts atomic.Int64
}

// startBackend listens on 127.0.0.1:0 with the kernel's default backlog.
func startBackend(t testing.TB, handler func(*net.TCPConn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveBackend(t, ln, handler)
}

// startTinyBacklogBackend listens with a listen backlog of 5, like some
// servers do, so that a burst of connects overflows its accept queue.
func startTinyBacklogBackend(t testing.TB, handler func(*net.TCPConn)) *backend {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 5); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "tiny-backlog")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return serveBackend(t, ln, handler)
}

func serveBackend(t testing.TB, ln net.Listener, handler func(*net.TCPConn)) *backend {
	b := &backend{ln: ln, handler: handler, conns: make(map[*net.TCPConn]struct{})}
	b.wg.Add(1)
	go b.acceptLoop()
	t.Cleanup(b.close)
	return b
}

func (b *backend) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepts.Add(1)
		tc := c.(*net.TCPConn)
		b.mu.Lock()
		b.conns[tc] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.handler(tc)
			tc.Close()
			b.mu.Lock()
			delete(b.conns, tc)
			b.mu.Unlock()
		}()
	}
}

func (b *backend) addrPort() netip.AddrPort {
	return b.ln.Addr().(*net.TCPAddr).AddrPort()
}

func (b *backend) close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// echo copies everything back and half-closes after the client's EOF.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// testApp is one app known to testWaker.
type testApp struct {
	// start creates the app's backend, lazily, on the first Wake.
	start func() *backend
	// gate, if not nil, holds every Wake until it is closed.
	gate chan struct{}
	// err, if set, fails every Wake.
	err error
	// upstream, if valid, is returned instead of starting a backend.
	upstream netip.AddrPort

	once    sync.Once
	backend *backend
	started atomic.Pointer[backend] // backend, for TryWake, once started
}

// testWaker is a real Waker: it starts in-process backends on first Wake,
// and counts leases so that tests can check each is released exactly once.
type testWaker struct {
	t        testing.TB
	mu       sync.Mutex
	apps     map[string]*testApp
	waiting  atomic.Int64 // Wake calls blocked on a gate
	wakes    atomic.Int64 // successful Wake calls
	releases atomic.Int64
	canceled atomic.Int64 // Wake calls that ended by ctx
	tryWakes atomic.Int64 // successful TryWake calls
	passives atomic.Int64 // successful TryWakePassive calls

	trafficMu sync.Mutex
	traffic   map[string]int // Traffic calls by app
	noTry     atomic.Bool    // TryWake always says no: every connection takes Wake
}

func newTestWaker(t testing.TB) *testWaker {
	return &testWaker{t: t, apps: make(map[string]*testApp)}
}

func (w *testWaker) add(name string, a *testApp) *testApp {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.apps[name] = a
	return a
}

func (w *testWaker) Wake(ctx context.Context, app string) (netip.AddrPort, func(), error) {
	w.mu.Lock()
	a, ok := w.apps[app]
	w.mu.Unlock()
	if !ok {
		return netip.AddrPort{}, nil, fmt.Errorf("unknown app %q", app)
	}
	if a.err != nil {
		return netip.AddrPort{}, nil, a.err
	}
	if a.gate != nil {
		w.waiting.Add(1)
		select {
		case <-a.gate:
			w.waiting.Add(-1)
		case <-ctx.Done():
			w.waiting.Add(-1)
			w.canceled.Add(1)
			return netip.AddrPort{}, nil, fmt.Errorf("waiting for app %q: %w", app, ctx.Err())
		}
	}
	up := a.upstream
	if !up.IsValid() {
		a.once.Do(func() {
			a.backend = a.start()
			a.started.Store(a.backend)
		})
		up = a.backend.addrPort()
	}
	return up, w.lease(app), nil
}

// TryWake makes testWaker a ReadyWaker: an app is ready once a Wake has
// started its backend (or it has a fixed upstream), and neither a closed
// gate nor an error stands in the way.
func (w *testWaker) TryWake(app string) (netip.AddrPort, func(), bool) {
	w.mu.Lock()
	a, ok := w.apps[app]
	w.mu.Unlock()
	if !ok || a.err != nil || w.noTry.Load() {
		return netip.AddrPort{}, nil, false
	}
	if a.gate != nil {
		select {
		case <-a.gate:
		default:
			return netip.AddrPort{}, nil, false
		}
	}
	up := a.upstream
	if !up.IsValid() {
		b := a.started.Load()
		if b == nil {
			return netip.AddrPort{}, nil, false
		}
		up = b.addrPort()
	}
	w.tryWakes.Add(1)
	return up, w.lease(app), true
}

// TryWakePassive makes testWaker a PassiveWaker: TryWake, counted apart.
func (w *testWaker) TryWakePassive(app string) (netip.AddrPort, func(), bool) {
	up, release, ok := w.TryWake(app)
	if ok {
		w.tryWakes.Add(-1)
		w.passives.Add(1)
	}
	return up, release, ok
}

// Traffic makes testWaker a TrafficWaker: it counts the calls per app.
func (w *testWaker) Traffic(app string, _ netip.AddrPort) {
	w.trafficMu.Lock()
	defer w.trafficMu.Unlock()
	if w.traffic == nil {
		w.traffic = map[string]int{}
	}
	w.traffic[app]++
}

// trafficOf returns how often Traffic was called for app.
func (w *testWaker) trafficOf(app string) int {
	w.trafficMu.Lock()
	defer w.trafficMu.Unlock()
	return w.traffic[app]
}

// lease counts a successful Wake or TryWake and returns its release.
func (w *testWaker) lease(app string) func() {
	w.wakes.Add(1)
	var released atomic.Bool
	release := func() {
		if released.Swap(true) {
			w.t.Errorf("release of app %q called twice", app)
			return
		}
		w.releases.Add(1)
	}
	return release
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newServer returns a Server logging to the returned buffer, shut down at
// the end of the test.
func newServer(t testing.TB, w Waker) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := &Server{
		Waker:    w,
		DataPath: testDataPath,
		// Two loops, so that every test also covers listeners shared by
		// loops and connections on either.
		EventLoops: 2,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, logs
}

// listenOne applies a table of one address, 127.0.0.1:0, routed to app, and
// returns the bound address.
func listenOne(t testing.TB, s *Server, app string) string {
	t.Helper()
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {{App: app}}}); errs != nil {
		t.Fatal(errs)
	}
	return s.Addr("127.0.0.1:0").String()
}

func dialTCP(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}
