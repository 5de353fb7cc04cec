package main

import (
	"context"
	"fmt"
	"net"
	"time"
)

// The wrk loads of the warm path.
var (
	loadKeepAlive = wrkLoad{threads: 2, conns: 50}
	loadNewConn   = wrkLoad{threads: 2, conns: 50, close: true}
	loadLatency   = wrkLoad{threads: 1, conns: 1}
)

// warm measures keep-alive requests, new connections and added latency
// through every target, alternating targets within each repetition.
func (b *bench) warm(ctx context.Context) error {
	if !b.hasWrk {
		return nil
	}
	loads := []struct {
		name string
		load wrkLoad
	}{{"keep-alive", loadKeepAlive}, {"new connections", loadNewConn}, {"latency", loadLatency}}
	samples := map[string]map[string][]sample{}
	for _, l := range loads {
		samples[l.name] = map[string][]sample{}
	}
	for rep := 0; rep < b.cfg.runs; rep++ {
		for _, l := range loads {
			for _, t := range order(b.present(), rep) {
				s, err := b.wrkSample(ctx, l.load, t)
				if err != nil {
					return fmt.Errorf("%s through %s: %w", l.name, t, err)
				}
				progress("%-15s %-7s rep %d: %8.0f req/s  p50 %6.0fµs  p99 %6.0fµs  cpu %5.1fµs/op  errors %.0f",
					l.name, t, rep+1, s.value, s.p50, s.p99, s.cpu/s.ops*1e6, s.errors)
				samples[l.name][t] = append(samples[l.name][t], s)
			}
		}
	}

	row := func(scenario, metric, unit string, lower bool, goal, chart string, f func(sample) float64, withDirect bool) {
		r := warmRow{scenario: scenario, metric: metric, unit: unit, lowerBetter: lower, goal: goal, chart: chart, values: map[string]float64{}}
		for t, ss := range samples[scenario] {
			if t == direct && !withDirect {
				continue
			}
			r.addRep(t, ss, f)
		}
		b.rep.warm = append(b.rep.warm, r)
	}
	rate := func(s sample) float64 { return s.value }
	p50 := func(s sample) float64 { return s.p50 }
	p99 := func(s sample) float64 { return s.p99 }
	cpuPerOp := func(s sample) float64 { return s.cpu / s.ops * 1e6 }
	cswPerOp := func(s sample) float64 { return s.csw / s.ops }

	row("keep-alive", "requests", "req/s", false, "dynapm/haproxy >= 1", "keep-alive req/s", rate, true)
	row("keep-alive", "p99 latency", "µs", true, "dynapm <= haproxy", "", p99, true)
	row("keep-alive", "proxy CPU per request", "µs", true, "dynapm <= haproxy", "", cpuPerOp, false)
	row("keep-alive", "proxy context switches per request", "", true, "", "", cswPerOp, false)
	row("new connections", "connections", "conn/s", false, "dynapm/haproxy >= 1", "new conn/s", rate, true)
	row("new connections", "proxy CPU per connection", "µs", true, "dynapm <= haproxy (about 70 µs)", "", cpuPerOp, false)
	row("new connections", "proxy context switches per connection", "", true, "", "", cswPerOp, false)
	row("latency", "p50", "µs", true, "added over direct < 60 µs", "latency p50 (inverse)", p50, true)
	row("latency", "p99", "µs", true, "", "", p99, true)
	// The added latency is the difference of the medians, per proxy.
	if d, ok := samples["latency"][direct]; ok {
		base := medianOf(d, p50)
		row("latency", "p50 added over direct", "µs", true, "dynapm < 60 µs", "",
			func(s sample) float64 { return s.p50 - base }, false)
	}
	return nil
}

// wrkSample runs one wrk load against target and charges the proxy's CPU
// time and context switches to it.
func (b *bench) wrkSample(ctx context.Context, load wrkLoad, target string) (sample, error) {
	pid := b.proxyPid(target)
	before := usage(pid)
	r, err := runWrk(ctx, load, "http://"+b.httpAddr[target]+"/", b.cfg.dur)
	if err != nil {
		return sample{}, err
	}
	u := usage(pid).sub(before)
	return sample{value: r.rate, p50: micros(r.p50), p99: micros(r.p99),
		cpu: u.cpu.Seconds(), csw: float64(u.csw), ops: r.requests, errors: float64(r.errors)}, nil
}

// bulkScenario downloads -bulk-mib through one connection per target,
// alternating, and charges the proxy's CPU per GB.
func (b *bench) bulkScenario(ctx context.Context) error {
	samples := map[string][]sample{}
	for rep := 0; rep < b.cfg.runs; rep++ {
		for _, t := range order(b.present(), rep) {
			pid := b.proxyPid(t)
			before := usage(pid)
			rate, err := download(b.bulkAddr[t], b.cfg.bulk)
			if err != nil {
				return fmt.Errorf("download through %s: %w", t, err)
			}
			u := usage(pid).sub(before)
			gb := float64(b.cfg.bulk) / 1e9
			progress("bulk            %-7s rep %d: %8.0f MB/s  cpu %.3f s/GB", t, rep+1, rate/1e6, u.cpu.Seconds()/gb)
			samples[t] = append(samples[t], sample{value: rate / 1e6, cpu: u.cpu.Seconds(), csw: float64(u.csw), ops: gb})
		}
	}
	r := warmRow{scenario: "bulk", metric: fmt.Sprintf("throughput (%d MiB, one connection)", b.cfg.bulk>>20), unit: "MB/s",
		goal: "dynapm/direct >= 0.75", chart: "bulk MB/s", values: map[string]float64{}}
	c := warmRow{scenario: "bulk", metric: "proxy CPU per GB", unit: "s", lowerBetter: true,
		goal: "dynapm < 0.3 s", values: map[string]float64{}}
	for t, ss := range samples {
		r.addRep(t, ss, func(s sample) float64 { return s.value })
		if t != direct {
			c.addRep(t, ss, func(s sample) float64 { return s.cpu / s.ops })
		}
	}
	b.rep.warm = append(b.rep.warm, r, c)
	return nil
}

// download reads n bytes from a BULK request and returns bytes per second.
func download(addr string, n int64) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	start := time.Now()
	if _, err := fmt.Fprintf(c, "BULK %d\n", n); err != nil {
		return 0, err
	}
	// A large buffer, so that the client's own reads cost little next to
	// the proxy's (io.Discard would read 8 KiB at a time).
	buf := make([]byte, 1<<20)
	var got int64
	for got < n {
		m, err := c.Read(buf)
		got += int64(m)
		if err != nil {
			break
		}
	}
	if got != n {
		return 0, fmt.Errorf("got %d bytes, want %d", got, n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
