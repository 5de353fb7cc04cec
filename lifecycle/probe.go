package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/internal/rawnet"
)

// Probe timing. The first probe goes out at once: the cold-start overhead
// target is under a millisecond, so the interval starts tiny (Config
// ProbeInterval) and stays so for probeFastFor, within which a compiled
// server listens, and only then grows by an eighth per try up to
// probeMaxInterval: every interval waited out is added to the wake
// (docs/BENCHMARKS.md, readiness probe).
//
// Go's timers cannot wait that precisely: when nothing else runs, the
// runtime sleeps in epoll_wait, whose timeout is in whole milliseconds, so
// a sub-millisecond timer takes at least a millisecond. So a TCP probe of
// a loopback upstream sleeps with nanosleep(2) on its goroutine's thread
// instead, and probes with raw system calls (socket, connect, poll,
// close), which keeps a start's probing to a small share of a core. At
// most preciseProbers starts at a time do that, each for at most
// preciseFor (a thread each, blocked in nanosleep); the others, later
// tries and HTTP probes wait on Go's timers, at probeMaxInterval at most
// apart.
const (
	defaultProbeInterval = 100 * time.Microsecond
	probeMaxInterval     = 500 * time.Microsecond
	probeFastFor         = 20 * time.Millisecond
	preciseProbers       = 8
	preciseFor           = 2 * time.Second
	// probeTryTimeout bounds one connect or HTTP request, so that a program
	// that accepts but never answers is retried rather than waited on.
	probeTryTimeout = time.Second
)

// errExited and errProbeTimeout are what waitReady returns when the process
// ends before it is ready, and when the start deadline passes.
var (
	errExited       = errors.New("process exited before it was ready")
	errProbeTimeout = errors.New("readiness probe timed out")
)

// elapsed is a channel that is always ready: the wait for the next probe
// is over (it was slept).
var elapsed = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

// prober tells whether a started program serves: a TCP connect to its
// upstream, or an HTTP GET answering 2xx/3xx. One prober serves all apps.
type prober struct {
	dialer net.Dialer
	client *http.Client
	// precise holds a token per start that sleeps with nanosleep (see
	// preciseProbers).
	precise chan struct{}
}

func newProber() *prober {
	p := &prober{
		dialer:  net.Dialer{KeepAlive: -1, Timeout: probeTryTimeout},
		precise: make(chan struct{}, preciseProbers),
	}
	p.client = &http.Client{
		Transport: &http.Transport{
			Proxy:             nil, // the upstream is local: never via $HTTP_PROXY
			DialContext:       p.dialer.DialContext,
			DisableKeepAlives: true,
		},
		// A redirect is an answer: the program serves.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       probeTryTimeout,
	}
	return p
}

// onceConn probes upstream one time and returns nil when it serves; a TCP
// probe of a loopback upstream returns its connection too (a descriptor
// the caller owns; -1 for other probes).
func (p *prober) onceConn(ctx context.Context, upstream netip.AddrPort, httpPath string) (int, error) {
	if httpPath == "" && upstream.Addr().IsLoopback() {
		// No goroutine, timer or netpoller registration: on the loopback
		// the connect is answered (or refused) within the call.
		return rawnet.Connect(ctx, upstream, probeTryTimeout)
	}
	return -1, p.onceNet(ctx, upstream, httpPath)
}

// onceNet probes through Go's net and net/http.
func (p *prober) onceNet(ctx context.Context, upstream netip.AddrPort, httpPath string) error {
	if httpPath == "" {
		c, err := p.dialer.DialContext(ctx, "tcp", upstream.String())
		if err != nil {
			return err
		}
		return c.Close()
	}
	if !strings.HasPrefix(httpPath, "/") {
		httpPath = "/" + httpPath
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+upstream.String()+httpPath, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", httpPath, resp.Status)
	}
	return nil
}

// waitReady probes until the program serves (nil), the process exits
// (errExited, at once: a dead program is not probed until the deadline), the
// deadline passes (errProbeTimeout, with the last probe error) or ctx ends
// (ctx.Err(): the start was called off). A TCP probe of a loopback
// upstream that passed returns its connection, a descriptor the caller
// owns; otherwise the descriptor is -1.
func (p *prober) waitReady(ctx context.Context, proc Process, upstream netip.AddrPort, httpPath string, interval time.Duration, deadline time.Time) (int, error) {
	if interval <= 0 {
		interval = defaultProbeInterval
	}
	maxInterval := max(interval, probeMaxInterval)
	began := time.Now()
	expire := time.NewTimer(time.Until(deadline))
	defer expire.Stop()
	var next *time.Timer
	defer func() {
		if next != nil {
			next.Stop()
		}
	}()
	checker, _ := proc.(ReadyChecker)
	// A driver's own readiness check (a Docker API call) is no thing to
	// run thousands of times a second: those probes wait on timers.
	var preciseUntil time.Time // zero: Go's timers
	if httpPath == "" && checker == nil && upstream.Addr().IsLoopback() {
		select {
		case p.precise <- struct{}{}:
			preciseUntil = time.Now().Add(preciseFor)
		default:
		}
	}
	defer func() {
		if !preciseUntil.IsZero() {
			<-p.precise
		}
	}()
	for {
		conn := -1
		lastErr := gateReady(ctx, checker)
		if lastErr == nil {
			conn, lastErr = p.onceConn(ctx, upstream, httpPath)
		}
		if lastErr == nil {
			return conn, nil
		}
		if !preciseUntil.IsZero() && time.Now().After(preciseUntil) {
			<-p.precise // a slow starter: its token goes to the next start
			preciseUntil = time.Time{}
		}
		var tick <-chan time.Time
		if !preciseUntil.IsZero() {
			// A sleep of the thread; the events are looked at after it,
			// at most maxInterval late.
			ts := syscall.NsecToTimespec(int64(interval))
			_ = syscall.Nanosleep(&ts, nil)
			tick = elapsed
		} else {
			if next == nil {
				next = time.NewTimer(interval)
			} else {
				next.Reset(interval)
			}
			tick = next.C
		}
		select {
		case <-tick:
		case <-proc.Done():
			return -1, errExited
		case <-expire.C:
			return -1, fmt.Errorf("%w: %v", errProbeTimeout, lastErr)
		case <-ctx.Done():
			return -1, ctx.Err()
		}
		interval = nextInterval(interval, maxInterval, time.Since(began))
	}
}

// nextInterval is the wait before the next probe, given the last one and
// how long the start has been probed: unchanged for probeFastFor, then an
// eighth longer per try up to limit.
func nextInterval(last, limit, probing time.Duration) time.Duration {
	if probing < probeFastFor {
		return last
	}
	return min(last+last/8, limit)
}
