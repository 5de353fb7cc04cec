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
	samples, err := b.wrkRounds(ctx, warmLoads, b.present(), func(t string) (string, []int) {
		return b.httpAddr[t], []int{b.proxyPid(t)}
	})
	if err != nil {
		return err
	}

	rate := func(s sample) float64 { return s.value }
	p50 := func(s sample) float64 { return s.p50 }
	p99 := func(s sample) float64 { return s.p99 }
	cswPerOp := func(s sample) float64 { return s.csw / s.ops }

	ka := scenarioRows{rep: b.rep, scenario: "keep-alive", samples: samples["keep-alive"]}
	ka.add(warmRow{metric: "requests", unit: "req/s", goal: "dynapm/haproxy >= 1.1", chart: "keep-alive req/s", key: keyKeepAlive}, rate, true)
	ka.add(warmRow{metric: "p99 latency", unit: "µs", lowerBetter: true, goal: "dynapm <= haproxy"}, p99, true)
	ka.cpu("request", "µs", 1e6, "dynapm <= haproxy", keyKeepAliveCPU)
	ka.add(warmRow{metric: "proxy context switches per request", lowerBetter: true}, cswPerOp, false)

	nc := scenarioRows{rep: b.rep, scenario: "new connections", samples: samples["new connections"]}
	nc.add(warmRow{metric: "connections", unit: "conn/s", goal: "dynapm/haproxy >= 1.2", chart: "new conn/s", key: keyNewConn}, rate, true)
	nc.cpu("connection", "µs", 1e6, "dynapm <= haproxy", keyNewConnCPU)
	nc.add(warmRow{metric: "proxy context switches per connection", lowerBetter: true}, cswPerOp, false)

	lat := scenarioRows{rep: b.rep, scenario: "latency", samples: samples["latency"]}
	lat.add(warmRow{metric: "p50", unit: "µs", lowerBetter: true, chart: "latency p50 (inverse)"}, p50, true)
	lat.add(warmRow{metric: "p99", unit: "µs", lowerBetter: true}, p99, true)
	lat.overDirect(warmRow{metric: "p50 added over direct", unit: "µs", lowerBetter: true, goal: "dynapm <= haproxy", key: keyAddedLatency}, p50)
	return nil
}

// namedLoad is a wrk load with the name its rows and progress lines use.
type namedLoad struct {
	name string
	load wrkLoad
}

var warmLoads = []namedLoad{{"keep-alive", loadKeepAlive}, {"new connections", loadNewConn}, {"latency", loadLatency}}

// wrkRounds runs every load against every target (rounds); at gives a
// target's address and the processes its CPU is charged to.
func (b *bench) wrkRounds(ctx context.Context, loads []namedLoad, ts []string, at func(string) (string, []int)) (map[string]map[string][]sample, error) {
	names := make([]string, len(loads))
	for i, l := range loads {
		names[i] = l.name
	}
	return b.rounds(names, ts, func(i int, t string, rep int) (sample, error) {
		l := loads[i]
		addr, pids := at(t)
		s, err := b.wrkSample(ctx, l.load, addr, pids)
		if err != nil {
			return s, fmt.Errorf("%s through %s: %w", l.name, t, err)
		}
		progress("%-15s %-7s rep %d: %8.0f req/s  p50 %6.0fµs  p99 %6.0fµs  cpu %5.1fµs/op  errors %.0f",
			l.name, t, rep+1, s.value, s.p50, s.p99, s.cpu/s.ops*1e6, s.errors)
		return s, nil
	})
}

// rounds measures, -runs times, load i of names against every target t
// with one(i, t, rep), the targets alternating with their order rotated
// per repetition. The samples are per load name and target, in the order
// the repetitions ran.
func (b *bench) rounds(names, ts []string, one func(i int, t string, rep int) (sample, error)) (map[string]map[string][]sample, error) {
	samples := map[string]map[string][]sample{}
	for _, n := range names {
		samples[n] = map[string][]sample{}
	}
	for rep := 0; rep < b.cfg.runs; rep++ {
		for i, n := range names {
			for _, t := range order(ts, rep) {
				s, err := one(i, t, rep)
				if err != nil {
					return nil, err
				}
				samples[n][t] = append(samples[n][t], s)
			}
		}
	}
	return samples, nil
}

// wrkSample runs one wrk load against addr and charges the CPU time and
// context switches of pids (the proxy's) and of the machine to it.
func (b *bench) wrkSample(ctx context.Context, load wrkLoad, addr string, pids []int) (sample, error) {
	m := startMeter(pids...)
	r, err := runWrk(ctx, load, "http://"+addr+"/", b.cfg.dur)
	if err != nil {
		return sample{}, err
	}
	s := sample{value: r.rate, p50: micros(r.p50), p99: micros(r.p99), ops: r.requests, errors: float64(r.errors)}
	s.charge(m.stop())
	return s, nil
}

// bulkScenario downloads -bulk-mib through one connection per target,
// alternating, and charges the proxy's and the machine's CPU per GB and
// context switches per MB.
func (b *bench) bulkScenario(ctx context.Context) error {
	samples := map[string][]sample{}
	for rep := 0; rep < b.cfg.runs; rep++ {
		for _, t := range order(b.present(), rep) {
			m := startMeter(b.proxyPid(t))
			rate, err := download(b.bulkAddr[t], b.cfg.bulk)
			if err != nil {
				return fmt.Errorf("download through %s: %w", t, err)
			}
			s := sample{value: rate / 1e6, ops: float64(b.cfg.bulk) / 1e9}
			s.charge(m.stop())
			progress("bulk            %-7s rep %d: %8.0f MB/s  cpu %.3f s/GB  machine %.3f s/GB (softirq %.3f), %.0f context switches/MB",
				t, rep+1, s.value, s.cpu/s.ops, s.machine/s.ops, s.softirq/s.ops, s.mcsw/(s.ops*1e3))
			samples[t] = append(samples[t], s)
		}
	}
	rows := scenarioRows{rep: b.rep, scenario: "bulk", samples: samples}
	rows.add(warmRow{metric: fmt.Sprintf("throughput (%d MiB, one connection)", b.cfg.bulk>>20), unit: "MB/s",
		goal: "dynapm/direct >= 0.75 in every repetition", chart: "bulk MB/s", key: keyBulk},
		func(s sample) float64 { return s.value }, true)
	rows.add(warmRow{metric: "proxy CPU per GB", unit: "s", lowerBetter: true, goal: "dynapm < 0.3 s"},
		func(s sample) float64 { return s.cpu / s.ops }, false)
	rows.add(warmRow{metric: "machine CPU per GB", unit: "s", lowerBetter: true},
		func(s sample) float64 { return s.machine / s.ops }, true)
	rows.overDirect(warmRow{metric: "machine CPU per GB over direct's", unit: "s", lowerBetter: true},
		func(s sample) float64 { return s.machine / s.ops })
	rows.add(warmRow{metric: "machine softirq per GB", unit: "s", lowerBetter: true},
		func(s sample) float64 { return s.softirq / s.ops }, true)
	// Wake-ups: every context switch of the proxy, and of the whole
	// machine (client, backend, kernel threads included).
	rows.add(warmRow{metric: "proxy context switches per MB", lowerBetter: true},
		func(s sample) float64 { return s.csw / (s.ops * 1e3) }, false)
	rows.add(warmRow{metric: "machine context switches per MB", lowerBetter: true},
		func(s sample) float64 { return s.mcsw / (s.ops * 1e3) }, true)
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
