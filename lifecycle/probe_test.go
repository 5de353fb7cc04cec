package lifecycle

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestProbeHTTPStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	up := netip.MustParseAddrPort(srv.Listener.Addr().String())
	p := newProber()
	for path, ready := range map[string]bool{"/ok": true, "redirect": true, "/down": false} {
		if err := p.onceClosing(context.Background(), up, path); (err == nil) != ready {
			t.Errorf("probe %s: err %v, want ready=%v", path, err, ready)
		}
	}
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := netip.MustParseAddrPort(ln.Addr().String())
	p := newProber()
	if err := p.onceClosing(context.Background(), up, ""); err != nil {
		t.Fatalf("probe of a listening port: %v", err)
	}
	ln.Close()
	closed := netip.MustParseAddrPort(testutil.FreeAddr(t))
	if err := p.onceClosing(context.Background(), closed, ""); err == nil {
		t.Fatal("probe of a closed port passed")
	}
}

// runningProc is a Process that runs until exit is called.
type runningProc struct{ done chan struct{} }

func newRunningProc() *runningProc                              { return &runningProc{done: make(chan struct{})} }
func (p *runningProc) Pid() int                                 { return 0 }
func (p *runningProc) Done() <-chan struct{}                    { return p.done }
func (p *runningProc) Err() error                               { return nil }
func (p *runningProc) Stop(syscall.Signal, time.Duration) error { return nil }
func (p *runningProc) exit()                                    { close(p.done) }

// lateListener reserves a loopback port that refuses connects (bound, not
// listening) and starts listening on it after delay; whenever that is, a
// probe must end up passing.
func lateListener(t *testing.T, delay time.Duration) netip.AddrPort {
	t.Helper()
	fd, ap := testutil.BoundSocket(t)
	listened := make(chan struct{})
	timer := time.AfterFunc(delay, func() {
		defer close(listened)
		if err := syscall.Listen(fd, 16); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() {
		if timer.Stop() {
			close(listened)
		}
		<-listened
	})
	return ap
}

func TestProbePassesOnceTheProgramListens(t *testing.T) {
	p := newProber()
	up := lateListener(t, 20*time.Millisecond)
	err := p.waitReadyClosing(context.Background(), newRunningProc(), up, "", 0, time.Now().Add(10*time.Second))
	if err != nil {
		t.Fatalf("waitReady: %v", err)
	}
	if n := len(p.precise); n != 0 {
		t.Errorf("%d precise-probe tokens still held after the probe passed", n)
	}
}

// More starts at once than may sleep precisely: the others wait on timers,
// every start is seen, and every token is given back.
func TestManyStartsAtOnceShareThePreciseProbers(t *testing.T) {
	p := newProber()
	n := preciseProbers + 4
	errs := make(chan error, n)
	for range n {
		up := lateListener(t, 30*time.Millisecond)
		go func() {
			errs <- func() error {
				err := p.waitReadyClosing(context.Background(), newRunningProc(), up, "", 0, time.Now().Add(10*time.Second))
				return err
			}()
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("waitReady: %v", err)
		}
	}
	if got := len(p.precise); got != 0 {
		t.Errorf("%d precise-probe tokens still held", got)
	}
}

func TestProbeStopsWhenTheProcessExits(t *testing.T) {
	p := newProber()
	proc := newRunningProc()
	closed := netip.MustParseAddrPort(testutil.FreeAddr(t))
	time.AfterFunc(20*time.Millisecond, proc.exit)
	err := p.waitReadyClosing(context.Background(), proc, closed, "", 0, time.Now().Add(time.Minute))
	if !errors.Is(err, errExited) {
		t.Fatalf("waitReady: %v, want errExited", err)
	}
	if got := len(p.precise); got != 0 {
		t.Errorf("%d precise-probe tokens still held", got)
	}
}

func TestProbeGivesUpAtTheDeadline(t *testing.T) {
	p := newProber()
	closed := netip.MustParseAddrPort(testutil.FreeAddr(t))
	err := p.waitReadyClosing(context.Background(), newRunningProc(), closed, "", 0, time.Now().Add(30*time.Millisecond))
	if !errors.Is(err, errProbeTimeout) {
		t.Fatalf("waitReady: %v, want errProbeTimeout", err)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("the timeout does not carry the last probe's error: %v", err)
	}
}

func TestProbeIntervalStaysShortForTheFirstTwentyMillisecondsThenGrows(t *testing.T) {
	const first, limit = 100 * time.Microsecond, 500 * time.Microsecond
	if got := nextInterval(first, limit, probeFastFor-time.Millisecond); got != first {
		t.Errorf("within the fast phase the interval became %v, want %v", got, first)
	}
	if got := nextInterval(first, limit, probeFastFor); got != first+first/8 {
		t.Errorf("after the fast phase the interval became %v, want %v", got, first+first/8)
	}
	if got := nextInterval(480*time.Microsecond, limit, time.Second); got != limit {
		t.Errorf("the interval grew to %v, past its limit %v", got, limit)
	}
}

// onceClosing probes upstream one time and returns nil when it serves.
func (p *prober) onceClosing(ctx context.Context, upstream netip.AddrPort, httpPath string) error {
	conn, err := p.onceConn(ctx, upstream, httpPath)
	if conn >= 0 {
		syscall.Close(conn)
	}
	return err
}

// waitReadyClosing is waitReady for the tests that want its verdict only:
// the probe's connection, if any, is closed.
func (p *prober) waitReadyClosing(ctx context.Context, proc Process, upstream netip.AddrPort, httpPath string, interval time.Duration, deadline time.Time) error {
	conn, err := p.waitReady(ctx, proc, &readiness{upstream: upstream, http: httpPath}, interval, deadline)
	if conn >= 0 {
		syscall.Close(conn)
	}
	return err
}
