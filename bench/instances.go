package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// instancesScenario measures what scale buys against a CPU-bound program:
// the request rate through DynaPM of one app at 1 instance, then at
// -instances, with the same clients and load. The program is
// internal/testapp in echo mode with -work: every request (one small write,
// echoed back) costs a fixed amount of computation, and GOMAXPROCS=1 makes
// each process compute one request at a time, like a single-threaded
// server (Node.js, Python). The clients keep -instance-clients connections
// open and send requests back to back; DynaPM spreads the connections over
// the instances by least connections.
func (b *bench) instancesScenario(ctx context.Context) error {
	rates := map[int]float64{}
	for _, n := range []int{1, b.cfg.instances} {
		r, err := b.instancesRate(n)
		if err != nil {
			return fmt.Errorf("%d instance(s): %w", n, err)
		}
		rates[n] = r
		progress("instances: %d: %.0f req/s", n, r)
	}
	scen := fmt.Sprintf("scale: %d connections to a CPU-bound program (%s per request, one core each)", b.cfg.instanceClients, b.cfg.instanceWork)
	b.rep.facts = append(b.rep.facts,
		factRow{scen, "requests through dynapm, 1 instance", fmt.Sprintf("%.0f req/s", rates[1]), ""},
		factRow{scen, fmt.Sprintf("requests through dynapm, %d instances", b.cfg.instances),
			fmt.Sprintf("%.0f req/s (%.2f× one instance)", rates[b.cfg.instances], rates[b.cfg.instances]/rates[1]),
			fmt.Sprintf("up to %d× on %d+ free cores", b.cfg.instances, b.cfg.instances)})
	return nil
}

// instancesRate runs a daemon with one app kept at n instances and returns
// the request rate the clients reach through it.
func (b *bench) instancesRate(n int) (float64, error) {
	const limit = 30 * time.Second
	dir := filepath.Join(b.work, "instances-"+strconv.Itoa(n))
	apps := filepath.Join(dir, "apps.d")
	if err := os.MkdirAll(apps, 0o755); err != nil {
		return 0, err
	}
	a := app{name: "cpu", listen: freeAddr(),
		// $INSTANCE is in the environment: each instance its own pidfile.
		shell: fmt.Sprintf("exec %s -mode echo -work %s -pidfile %s/$INSTANCE.pid", b.testappBin, b.cfg.instanceWork, dir),
		extra: fmt.Sprintf("env: {GOMAXPROCS: \"1\"}\nmode: persistent\nstop_timeout: 2s\n"+
			"scale: {max: %d, min: %d, target_connections: 100000}\n", n, n)}
	if err := a.write(apps); err != nil {
		return 0, err
	}
	d, _, err := startDaemon(b.dynapmBin, dir, limit)
	if err != nil {
		return 0, err
	}
	defer d.stop()
	// min n, persistent: every instance starts at boot.
	for i := range n {
		pidfile := filepath.Join(dir, strconv.Itoa(i)+".pid")
		if err := pollUntil(limit, func() bool { _, err := os.Stat(pidfile); return err == nil }); err != nil {
			return 0, fmt.Errorf("instance %d did not start (see %s): %w", i, d.logPath, err)
		}
	}
	conns := make([]net.Conn, 0, b.cfg.instanceClients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range b.cfg.instanceClients {
		c, err := net.DialTimeout("tcp", a.listen, limit)
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
		if err := echoRoundTrip(c, make([]byte, 64), time.Now().Add(limit)); err != nil {
			return 0, fmt.Errorf("first request: %w", err)
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		first error
	)
	start := time.Now()
	end := start.Add(b.cfg.dur)
	for _, c := range conns {
		wg.Go(func() {
			buf, count := make([]byte, 64), 0
			var err error
			for time.Now().Before(end) {
				if err = echoRoundTrip(c, buf, end.Add(limit)); err != nil {
					break
				}
				count++
			}
			mu.Lock()
			defer mu.Unlock()
			total += count
			if err != nil && first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

// echoRoundTrip sends buf and reads it back.
func echoRoundTrip(c net.Conn, buf []byte, deadline time.Time) error {
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf)
	return err
}
