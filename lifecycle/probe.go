package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Probe timing. The first probe goes out at once: the cold-start overhead
// target is under a millisecond, so the interval starts tiny (Config
// ProbeInterval) and grows by a tenth per try up to probeMaxInterval: a
// program that listens after a few milliseconds is seen within a fraction
// of a millisecond, and a slow starter costs at most ~40 connects a second
// after its first quarter second. A refused loopback connect costs a few
// microseconds, so the fast start is cheap.
const (
	defaultProbeInterval = 250 * time.Microsecond
	probeMaxInterval     = 25 * time.Millisecond
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

// prober tells whether a started program serves: a TCP connect to its
// upstream, or an HTTP GET answering 2xx/3xx. One prober serves all apps.
type prober struct {
	dialer net.Dialer
	client *http.Client
}

func newProber() *prober {
	p := &prober{dialer: net.Dialer{KeepAlive: -1, Timeout: probeTryTimeout}}
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

// once probes upstream one time and returns nil when it serves.
func (p *prober) once(ctx context.Context, upstream netip.AddrPort, httpPath string) error {
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
// (ctx.Err(): the start was called off).
func (p *prober) waitReady(ctx context.Context, proc Process, upstream netip.AddrPort, httpPath string, interval time.Duration, deadline time.Time) error {
	if interval <= 0 {
		interval = defaultProbeInterval
	}
	maxInterval := max(interval, probeMaxInterval)
	expire := time.NewTimer(time.Until(deadline))
	defer expire.Stop()
	var next *time.Timer
	defer func() {
		if next != nil {
			next.Stop()
		}
	}()
	checker, _ := proc.(ReadyChecker)
	for {
		lastErr := gateReady(ctx, checker)
		if lastErr == nil {
			lastErr = p.once(ctx, upstream, httpPath)
		}
		if lastErr == nil {
			return nil
		}
		if next == nil {
			next = time.NewTimer(interval)
		} else {
			next.Reset(interval)
		}
		select {
		case <-next.C:
		case <-proc.Done():
			return errExited
		case <-expire.C:
			return fmt.Errorf("%w: %v", errProbeTimeout, lastErr)
		case <-ctx.Done():
			return ctx.Err()
		}
		interval = min(interval+interval/10+10*time.Microsecond, maxInterval)
	}
}
