package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
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
// a sub-millisecond timer takes at least a millisecond. So the default
// probe of a loopback upstream (a TCP connect, or a UDP program's bound
// port) sleeps with nanosleep(2) on its goroutine's thread instead, and
// probes with raw system calls (socket, connect, poll, close; a sock_diag
// lookup), which keeps a start's probing to a small share of a core. At
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
	// probeTryTimeout bounds one connect, HTTP request or TCP exchange,
	// so that a program that accepts but never answers is retried rather
	// than waited on.
	probeTryTimeout = time.Second
	// A ready.command try forks and execs: it starts commandInterval
	// apart, growing to commandMaxInterval, each bounded by
	// commandTryTimeout.
	commandInterval    = 10 * time.Millisecond
	commandMaxInterval = 200 * time.Millisecond
	commandTryTimeout  = 5 * time.Second
	// A ready.tcp reply is read up to maxTCPReply bytes; once some came,
	// a pause of tcpReplyPause ends it: the program has answered, and not
	// with what was expected.
	maxTCPReply   = 16 << 10
	tcpReplyPause = 100 * time.Millisecond
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
// upstream, an HTTP GET answering 2xx/3xx, a TCP exchange, a command that
// exits 0, or a signal from the program (ready: {notify} or {log}). One
// prober serves all apps.
type prober struct {
	dialer net.Dialer
	client *http.Client
	// precise holds a token per start that sleeps with nanosleep (see
	// preciseProbers).
	precise chan struct{}
}

// readiness is what one start waits for, from its app's ready: key
// (Manager.spawn builds it).
type readiness struct {
	upstream netip.AddrPort
	// socket, when set, is the socket file the program serves on: ready
	// once a connect to it succeeds, with a listener of uid owner when
	// checkOwner is set.
	socket     string
	owner      uint32
	checkOwner bool
	// http is ready.http's path; tcp ready.tcp's exchange.
	http string
	tcp  appfile.TCPCheck
	// command runs ready.command once; nil for the other kinds.
	command func(ctx context.Context) error
	// signal is closed once the program said it is ready (notify, log);
	// nil for the kinds that are probed. awaited says what it waits for,
	// for the timeout's message.
	signal  <-chan struct{}
	awaited string
	// udpBound: the app only listens on UDP; ready once its program has
	// bound the upstream port (probe_udp.go).
	udpBound bool
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

// once probes one time and returns nil when the program serves; the plain
// TCP probe of a loopback upstream returns its connection too (a
// descriptor the caller owns; -1 for other probes).
func (p *prober) once(ctx context.Context, r *readiness) (int, error) {
	switch {
	case r.command != nil:
		return -1, r.command(ctx)
	case r.socket != "":
		return r.connectSocket(ctx)
	case r.tcp.Expect != "":
		return -1, p.onceTCP(ctx, r.upstream, r.tcp)
	case r.udpBound:
		return -1, onceUDPBound(r.upstream)
	}
	return p.onceConn(ctx, r.upstream, r.http)
}

// onceConn probes upstream one time with a connect or an HTTP GET; a TCP
// probe of a loopback upstream returns its connection (-1 for others).
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

// onceTCP connects, sends check.Send and reads the reply until it holds
// check.Expect (HAProxy's tcp-check send and expect string). The reply
// ends short of it when the program closes, maxTCPReply bytes came, or it
// paused for tcpReplyPause after sending something.
func (p *prober) onceTCP(ctx context.Context, upstream netip.AddrPort, check appfile.TCPCheck) error {
	c, err := p.dialer.DialContext(ctx, "tcp", upstream.String())
	if err != nil {
		return err
	}
	defer c.Close()
	end := time.Now().Add(probeTryTimeout)
	if err := c.SetDeadline(end); err != nil {
		return err
	}
	// A start called off ends the exchange at once.
	defer context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })()
	if check.Send != "" {
		if _, err := io.WriteString(c, check.Send); err != nil {
			return err
		}
	}
	expect := []byte(check.Expect)
	reply := make([]byte, 0, 512)
	buf := make([]byte, 4096)
	for len(reply) < maxTCPReply {
		n, err := c.Read(buf[:min(len(buf), maxTCPReply-len(reply))])
		reply = append(reply, buf[:n]...)
		if bytes.Contains(reply, expect) {
			return nil
		}
		if err != nil {
			if len(reply) == 0 {
				return fmt.Errorf("no reply: %w", err)
			}
			break
		}
		if pause := time.Now().Add(tcpReplyPause); n > 0 && pause.Before(end) {
			_ = c.SetReadDeadline(pause)
		}
	}
	return fmt.Errorf("expected %q in the reply, got %s", check.Expect, quoteStart(reply, 64))
}

// quoteStart quotes the first n bytes of b, marking a cut.
func quoteStart(b []byte, n int) string {
	if len(b) > n {
		return strconv.Quote(string(b[:n])) + "..."
	}
	return strconv.Quote(string(b))
}

// waitReady waits until the program serves (nil), the process exits
// (errExited, at once: a dead program is not probed until the deadline), the
// deadline passes (errProbeTimeout, with the last probe error) or ctx ends
// (ctx.Err(): the start was called off). A program that signals its
// readiness is waited for without polling; the others are probed, starting
// at interval. A plain TCP probe of a loopback upstream that passed returns
// its connection, a descriptor the caller owns; otherwise the descriptor is
// -1.
func (p *prober) waitReady(ctx context.Context, proc Process, r *readiness, interval time.Duration, deadline time.Time) (int, error) {
	expire := time.NewTimer(time.Until(deadline))
	defer expire.Stop()
	if r.signal != nil {
		select {
		case <-r.signal:
			select {
			case <-proc.Done(): // said ready, then died
				return -1, errExited
			default:
			}
			return -1, nil
		case <-proc.Done():
			return -1, errExited
		case <-expire.C:
			return -1, fmt.Errorf("%w: no %s", errProbeTimeout, r.awaited)
		case <-ctx.Done():
			return -1, ctx.Err()
		}
	}
	if interval <= 0 {
		interval = defaultProbeInterval
	}
	maxInterval := max(interval, probeMaxInterval)
	if r.command != nil {
		// A command is a fork and an exec per try, not a connect.
		interval = max(interval, commandInterval)
		maxInterval = max(interval, commandMaxInterval)
	}
	// A try that takes long (a command, an exchange) ends at the deadline
	// too. Not for the default checks, which are answered within the
	// call and are on the path of every cold start.
	tryCtx := ctx
	if !r.inCall() {
		var cancel context.CancelFunc
		tryCtx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	began := time.Now()
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
	if r.inCall() && checker == nil && (r.upstream.Addr().IsLoopback() || r.socket != "") {
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
			conn, lastErr = p.once(tryCtx, r)
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

// plainConnect reports whether r is the default check, a TCP connect,
// whose connection may carry the first held client.
func (r *readiness) plainConnect() bool {
	return r.signal == nil && r.command == nil && r.http == "" && r.tcp.Expect == "" && !r.udpBound
}

// inCall reports whether r is a default check, a TCP connect or a UDP
// program's bound port (probe_udp.go): a few system calls answered within
// the call, cheap enough to try every defaultProbeInterval.
func (r *readiness) inCall() bool {
	return r.plainConnect() || (r.udpBound && r.signal == nil && r.command == nil)
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
