package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

func TestWakeStartsStoppedApp(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web", "-listen", "127.0.0.1:${PORT}", "-print-env", "GREETING")
	spec.Env = map[string]string{"GREETING": "port-${PORT}-$PORTX-$$"}
	h.m.Apply([]*appfile.Spec{spec})
	if st := h.status("web"); st.State != Stopped || st.Starts != 0 {
		t.Fatalf("before wake: %s, want stopped and never started", fmtStatus(st))
	}

	up, release := h.wake("web")
	defer release()
	if got := echo(t, up, "hello"); got != "hello" {
		t.Fatalf("echo through upstream %v = %q", up, got)
	}
	st := h.status("web")
	if st.State != Ready || st.Starts != 1 || st.Connections != 1 || !testutil.ProcessAlive(st.Pid) || st.Upstream != up.String() {
		t.Fatalf("after wake: %s", fmtStatus(st))
	}
	h.waitLog(`msg="app started"`, "app=web", "reason=connection", "pid="+strconv.Itoa(st.Pid), "took=")

	// The log file: private, with a start header and the program's output,
	// ${PORT} expanded in argv (it listens on it) and in env (only PORT).
	path := filepath.Join(h.cfg.StateDir, "logs", "web.log")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("log dir mode %v, want 0700", di.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(int(up.Port()))
	for _, want := range []string{startHeader, "GREETING=port-" + port + "-$PORTX-$$\n", "listening on 127.0.0.1:" + port} {
		if !strings.Contains(string(b), want) {
			t.Errorf("log file lacks %q:\n%s", want, b)
		}
	}
}

func TestWakeUnknownApp(t *testing.T) {
	h := newHarness(t)
	_, _, err := h.m.Wake(context.Background(), "nope")
	wantErr(t, err, ErrUnknownApp)
}

func TestConcurrentWakesSpawnOnce(t *testing.T) {
	h := newHarness(t)
	// A slow start, so that every caller arrives while it starts.
	h.m.Apply([]*appfile.Spec{h.spec("web", "-delay", "200ms")})
	const callers = 200
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ups  = map[netip.AddrPort]int{}
		errs []error
	)
	for range callers {
		wg.Go(func() {
			up, release, err := h.m.Wake(ctx, "web")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ups[up]++
			release()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d wakes failed, first: %v", len(errs), callers, errs[0])
	}
	st := h.status("web")
	if st.Starts != 1 || len(ups) != 1 || st.Connections != 0 || st.Pending != 0 {
		t.Fatalf("after %d wakes: %s, upstreams %v; want one start, one upstream, no connection left", callers, fmtStatus(st), ups)
	}
}

func TestHTTPReadinessWaitsFor2xx(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web", "-mode", "http", "-ready-delay", "300ms")
	spec.Ready.HTTP = "/healthz"
	h.m.Apply([]*appfile.Spec{spec})
	up, release := h.wake("web")
	defer release()
	// Were readiness a bare TCP connect, /healthz would still say 503.
	resp, err := httpGet("http://" + up.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	if resp != 200 {
		t.Fatalf("GET /healthz right after wake: %d, want 200", resp)
	}
}

func TestExitBeforeReadyFailsWaitersAtOnce(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = 300*time.Millisecond, time.Second })
	spec := h.spec("bad", "-crash")
	spec.StartTimeout = time.Minute
	h.m.Apply([]*appfile.Spec{spec})

	const callers = 5
	began := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { _, _, errs[i] = h.m.Wake(context.Background(), "bad") })
	}
	wg.Wait()
	// "At once" against a one-minute start timeout: generous for a loaded
	// machine, far from the timeout.
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("waiters failed after %v, want well before the start timeout", took)
	}
	for _, err := range errs {
		if err == nil {
			t.Fatal("a wake of a crashing app succeeded")
		}
		if !errors.Is(err, ErrStartFailed) && !errors.Is(err, ErrBackoff) {
			t.Fatalf("wake error %v, want ErrStartFailed (or ErrBackoff for a late caller)", err)
		}
	}
	line := h.waitLog(`msg="app failed to start"`, "app=bad", "exit status 3", "backoff=300ms")
	if !strings.Contains(line, "crashing on purpose") {
		t.Errorf("failure log lacks the program's stderr tail: %s", line)
	}
	st := h.status("bad")
	if st.Starts != 1 || !strings.Contains(st.LastError, "exit status 3") {
		t.Fatalf("after failed start: %s", fmtStatus(st))
	}
}

func TestWakeDuringBackoffFailsFast(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
	h.m.Apply([]*appfile.Spec{h.spec("bad", "-crash")})
	_, _, err := h.m.Wake(context.Background(), "bad")
	wantErr(t, err, ErrStartFailed)
	h.waitState("bad", Failed)
	_, _, err = h.m.Wake(context.Background(), "bad")
	wantErr(t, err, ErrBackoff)
	if st := h.status("bad"); st.Starts != 1 {
		t.Fatalf("a wake during backoff spawned: %s", fmtStatus(st))
	}
}

func TestBackoffDoublesAndLaterWakeRetries(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = 50*time.Millisecond, 150*time.Millisecond })
	h.m.Apply([]*appfile.Spec{h.spec("bad", "-crash")})
	for i, want := range []string{"backoff=50ms", "backoff=100ms", "backoff=150ms", "backoff=150ms"} {
		// After the backoff the app is stopped again and a wake retries.
		h.waitState("bad", Stopped)
		_, _, err := h.m.Wake(context.Background(), "bad")
		wantErr(t, err, ErrStartFailed)
		h.waitLog(`msg="app failed to start"`, "failures="+strconv.Itoa(i+1)+" ", want)
	}
	if st := h.status("bad"); st.Starts != 4 {
		t.Fatalf("after four failing wakes: %s", fmtStatus(st))
	}
}

func TestStartTimeoutStopsProcess(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
	pidfile := filepath.Join(t.TempDir(), "pid")
	spec := h.spec("slow", "-mode", "sleep", "-pidfile", pidfile)
	// Long enough for a loaded machine to start the program and let it
	// write its pid; the test is about what happens at the timeout.
	spec.StartTimeout = 2 * time.Second
	h.m.Apply([]*appfile.Spec{spec})
	_, _, err := h.m.Wake(context.Background(), "slow")
	wantErr(t, err, ErrStartTimeout)
	pid := testutil.ReadPidFile(t, pidfile)
	st := h.waitState("slow", Failed)
	if testutil.ProcessAlive(pid) {
		t.Fatalf("process %d outlived its start timeout", pid)
	}
	if !strings.Contains(st.LastError, ErrStartTimeout.Error()) {
		t.Fatalf("last error %q", st.LastError)
	}
}

func TestWaiterContextEndsWait(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.spec("slow", "-mode", "sleep")})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := h.m.Wake(ctx, "slow")
		errc <- err
	}()
	testutil.Eventually(t, mgrWait, func() bool { return h.status("slow").Pending == 1 }, "wake not pending")
	cancel()
	wantErr(t, <-errc, context.Canceled)
	if st := h.status("slow"); st.Pending != 0 || st.State != Starting {
		t.Fatalf("after the waiter left: %s, want starting with none pending", fmtStatus(st))
	}
}

func TestMaxPendingRefusesExtraWaiters(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("slow", "-mode", "sleep") // never ready
	spec.MaxPending = 3
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make([]error, spec.MaxPending)
	for i := range spec.MaxPending {
		wg.Go(func() { _, _, errs[i] = h.m.Wake(ctx, "slow") })
	}
	testutil.Eventually(t, mgrWait, func() bool { return h.status("slow").Pending == spec.MaxPending }, "waiters not pending")

	for range 10 {
		_, _, err := h.m.Wake(context.Background(), "slow")
		wantErr(t, err, ErrTooManyPending)
	}
	cancel()
	wg.Wait()
	for _, err := range errs {
		wantErr(t, err, context.Canceled)
	}
	st := h.status("slow")
	if st.Refused != 10 || st.Pending != 0 || st.Starts != 1 {
		t.Fatalf("after 10 refusals: %s refused=%d", fmtStatus(st), st.Refused)
	}
	// Aggregated: the first refusal at once, the rest in a summary when
	// the start ends, not one line each.
	h.waitLog("too many pending", "app=slow", "refused=1 ")
	if err := h.m.Stop(context.Background(), "slow", "manual"); err != nil {
		t.Fatal(err)
	}
	h.waitLog("too many pending", "app=slow", "refused=9 ")
	if n := strings.Count(h.logs.String(), "too many pending"); n != 2 {
		t.Fatalf("%d log lines about refusals, want 2", n)
	}
}

// httpGet returns the status code of a GET to url, on a fresh connection.
func httpGet(url string) (int, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: mgrWait}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TryWake leases only an app that is ready now: a stopped app is left
// stopped (no start, no wait), a ready one is leased like Wake leases it,
// with the connection counted until the release, after which the idle
// timer runs again.
func TestTryWakeLeasesOnlyAReadyApp(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.IdleTimeout = 200 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	if _, _, ok := h.m.TryWake("web"); ok {
		t.Fatal("TryWake leased a stopped app")
	}
	if _, _, ok := h.m.TryWake("nope"); ok {
		t.Fatal("TryWake leased an unknown app")
	}
	if st := h.status("web"); st.State != Stopped || st.Starts != 0 {
		t.Fatalf("after TryWake of a stopped app: %s, want stopped and never started", fmtStatus(st))
	}

	up, release := h.wake("web")
	release()
	tup, trelease, ok := h.m.TryWake("web")
	if !ok {
		t.Fatalf("TryWake of a ready app said no: %s", fmtStatus(h.status("web")))
	}
	if tup != up {
		t.Errorf("TryWake upstream %v, Wake gave %v", tup, up)
	}
	if got := echo(t, tup, "warm"); got != "warm" {
		t.Fatalf("echo through TryWake's upstream = %q", got)
	}
	if st := h.status("web"); st.Connections != 1 || st.Starts != 1 {
		t.Fatalf("with a TryWake lease open: %s, want one connection, one start", fmtStatus(st))
	}
	trelease()
	trelease() // a second call changes nothing
	h.waitState("web", Stopped)
	h.waitLog(`msg="app stopped"`, "app=web", "reason=idle")
}

func TestFirstWaiterOfAStartGetsTheProbesConnection(t *testing.T) {
	h := newHarness(t)
	// A slow start, so that every caller waits for it.
	h.m.Apply([]*appfile.Spec{h.spec("web", "-delay", "100ms")})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	const callers = 5
	type woken struct {
		conn    int
		release func()
		err     error
	}
	results := make(chan woken, callers)
	for range callers {
		go func() {
			_, conn, release, err := h.m.WakeConn(ctx, "web")
			results <- woken{conn, release, err}
		}()
	}
	var conns []int
	for range callers {
		r := <-results
		if r.err != nil {
			t.Fatalf("WakeConn: %v", r.err)
		}
		defer r.release()
		if r.conn >= 0 {
			conns = append(conns, r.conn)
		}
	}
	if len(conns) != 1 {
		t.Fatalf("%d of %d waiters got a connection, want exactly one", len(conns), callers)
	}
	// It is a connection to the program: the echo server answers on it.
	f := os.NewFile(uintptr(conns[0]), "probe")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(mgrWait))
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
		t.Fatalf("echo over the handed-over connection = %q, %v", b, err)
	}
	if st := h.status("web"); st.Starts != 1 || st.Pending != 0 || st.Connections != callers {
		t.Fatalf("after the wakes: %s", fmtStatus(st))
	}
}

// startedWeb returns a harness whose app "web" was started by hand (no
// connection waited for it).
func startedWeb(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.spec("web")})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Start(ctx, "web", "manual"); err != nil {
		t.Fatal(err)
	}
	return h
}

// spareSocket returns a connected socket pair: the end to keep as a
// spare connection, and the program's end, which the test closes.
func spareSocket(t *testing.T) (spare, peer int) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fds[1]) })
	return fds[0], fds[1]
}

// wantClosed fails unless the other end of peer was closed.
func wantClosed(t *testing.T, peer int) {
	t.Helper()
	if n, err := syscall.Read(peer, make([]byte, 1)); n != 0 || err != nil {
		t.Fatalf("the program's end read %d bytes (%v), want EOF", n, err)
	}
}

func TestStartNobodyWaitsForKeepsNoProbeConnection(t *testing.T) {
	h := startedWeb(t)
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	_, conn, release, err := h.m.WakeConn(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if conn >= 0 {
		syscall.Close(conn)
		t.Fatal("a connection after a manual start got the probe's connection; nobody waited for it")
	}
}

func TestStopClosesAProbeConnectionNobodyTook(t *testing.T) {
	spare, peer := spareSocket(t)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{ctx: ctx, cancel: cancel, stopCh: make(chan struct{}), spare: &spareConn{fd: spare}}
	in.requestStop("idle")
	if in.spare != nil {
		t.Fatal("the spare connection is still held after the stop request")
	}
	wantClosed(t, peer)
}

func TestTheLastWaiterLeavingClosesTheProbeConnection(t *testing.T) {
	h := startedWeb(t)
	spare, peer := spareSocket(t)
	h.m.mu.Lock()
	a := h.m.apps["web"]
	a.insts[0].spare = &spareConn{fd: spare} // kept for a waiter that then left
	a.pending = 1
	h.m.dropUnclaimedLocked("web")
	kept := a.insts[0].spare != nil
	a.pending = 0
	h.m.dropUnclaimedLocked("web")
	left := a.insts[0].spare
	h.m.mu.Unlock()
	if !kept {
		t.Fatal("the connection was closed while a waiter was still there to take it")
	}
	if left != nil {
		t.Fatal("the connection is still held after the last waiter left")
	}
	wantClosed(t, peer)
}

// starvedDriver fails its first starts for lack of descriptors, as a
// start does while a flood of connections holds them all.
type starvedDriver struct {
	Driver
	left *atomic.Int32
}

func (d starvedDriver) Start(ctx context.Context, req StartRequest) (Process, error) {
	if d.left.Add(-1) >= 0 {
		return nil, fmt.Errorf("picking a free port: %w", os.NewSyscallError("socket", syscall.EMFILE))
	}
	return d.Driver.Start(ctx, req)
}

// The attack: under EMFILE another app's wake failed on "picking a free
// port" and went into backoff. A start that finds no descriptor is tried
// again within start_timeout, and its waiting client is served.
func TestStartWithoutDescriptorsIsTriedAgainNotFailed(t *testing.T) {
	left := &atomic.Int32{}
	left.Store(3)
	h := newHarness(t, func(c *Config) { c.Driver = starvedDriver{c.Driver, left} })
	h.m.Apply([]*appfile.Spec{h.spec("web", "-listen", "127.0.0.1:${PORT}")})
	up, release := h.wake("web")
	defer release()
	if got := echo(t, up, "hello"); got != "hello" {
		t.Fatalf("echo = %q", got)
	}
	if st := h.status("web"); st.State != Ready || st.Starts != 1 {
		t.Fatalf("after the wake: %s, want ready after one start", fmtStatus(st))
	}
	if n := strings.Count(h.logs.String(), "no descriptor left"); n != 1 {
		t.Errorf("%d warnings about descriptors, want 1 per start:\n%s", n, h.logs)
	}
}
