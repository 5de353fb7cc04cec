package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// udpPayload is the size of every datagram the UDP loads send: a small
// request, as DNS queries and game updates are.
const udpPayload = 64

// udpLoad is a bounded load of datagrams to an echo: clients sockets of
// their own, each keeping window datagrams in flight, for a duration or
// max replies per client, whichever comes first.
type udpLoad struct {
	clients, window int
	max             int
}

// The UDP loads: throughput with datagrams in flight, and one at a time
// for the round trip's latency.
var (
	udpThroughput = udpLoad{clients: 8, window: 8, max: 5_000_000}
	udpOneAtATime = udpLoad{clients: 1, window: 1, max: 1_000_000}
)

func (l udpLoad) String() string {
	return fmt.Sprintf("%d clients × %d in flight", l.clients, l.window)
}

// udpLossWait is how long a client waits for a reply before it counts the
// datagrams in flight as lost and sends a fresh window.
const udpLossWait = 50 * time.Millisecond

// udpResult is what one load measured.
type udpResult struct {
	replies, lost int
	elapsed       time.Duration
	rtts          []time.Duration // one-at-a-time loads only
}

func (r udpResult) rate() float64 { return float64(r.replies) / r.elapsed.Seconds() }

// runUDP runs load against addr for d and returns the replies received.
// A one-at-a-time load also records every round trip.
func runUDP(addr string, load udpLoad, d time.Duration) (udpResult, error) {
	conns := make([]*net.UDPConn, load.clients)
	for i := range conns {
		c, err := dialUDP(addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return udpResult{}, err
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var (
		mu  sync.Mutex
		out udpResult
		wg  sync.WaitGroup
	)
	errs := make([]error, len(conns))
	start := time.Now()
	end := start.Add(d)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := udpClient(c, load, end)
			errs[i] = err
			mu.Lock()
			out.replies += r.replies
			out.lost += r.lost
			out.rtts = append(out.rtts, r.rtts...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	if out.replies == 0 {
		return out, fmt.Errorf("no reply from %s", addr)
	}
	return out, nil
}

func dialUDP(addr string) (*net.UDPConn, error) {
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return net.DialUDP("udp", nil, ra)
}

// udpClient keeps load.window datagrams in flight on c until end or
// load.max replies; a window that goes unanswered for udpLossWait counts
// as lost and is sent afresh. Each datagram carries the number of its
// window, so that a late reply to a window given up on is counted (as a
// reply, not a loss) without another datagram being sent for it.
func udpClient(c *net.UDPConn, load udpLoad, end time.Time) (udpResult, error) {
	var r udpResult
	msg := make([]byte, udpPayload)
	buf := make([]byte, 2048)
	timed := load.window == 1
	var epoch uint32
	send := func() error {
		binary.LittleEndian.PutUint32(msg, epoch)
		for range load.window {
			if _, err := c.Write(msg); err != nil {
				return err
			}
		}
		return nil
	}
	if err := send(); err != nil {
		return r, err
	}
	sent := time.Now()
	for r.replies < load.max {
		now := time.Now()
		if now.After(end) {
			break
		}
		_ = c.SetReadDeadline(now.Add(udpLossWait))
		n, err := c.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return r, err
			}
			r.lost += load.window
			epoch++
			sent = time.Now()
			if err := send(); err != nil {
				return r, err
			}
			continue
		}
		r.replies++
		if n < 4 || binary.LittleEndian.Uint32(buf) != epoch {
			r.lost-- // late, not lost
			continue
		}
		if timed {
			now := time.Now()
			r.rtts = append(r.rtts, now.Sub(sent))
			sent = now
		}
		if _, err := c.Write(msg); err != nil {
			return r, err
		}
	}
	return r, nil
}

// percentile is the p-th percentile (0 to 100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// udpFirstReply sends one datagram to addr and returns the time until its
// reply: through DynaPM, the first datagram to a stopped app is held
// while the app starts, and answered once it is ready.
func udpFirstReply(addr string, limit time.Duration) (time.Duration, error) {
	c, err := dialUDP(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(limit))
	buf := make([]byte, 2048)
	start := time.Now()
	if _, err := c.Write(make([]byte, udpPayload)); err != nil {
		return 0, err
	}
	if _, err := c.Read(buf); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// udpPollReply sends a datagram to addr every 100 µs (pollPause), as
// tightly as a client could, until one is answered, and returns the time
// from start to that answer: the bare start of a UDP program, whose port
// drops datagrams until it is bound.
func udpPollReply(start time.Time, addr string, limit time.Duration) (time.Duration, error) {
	c, err := dialUDP(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	msg, buf := make([]byte, udpPayload), make([]byte, 2048)
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		// Refused (the ICMP of an earlier datagram) until the port is
		// bound: a send or receive error is the poll's answer, not a
		// failure.
		_, _ = c.Write(msg)
		pollPause()
		got := false
		if err := rc.Read(func(fd uintptr) bool {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			got = err == nil && n > 0
			return true
		}); err != nil {
			return 0, err
		}
		if got {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("no reply from %s within %s", addr, limit)
}
