package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"math"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// redisLoad is one redis-benchmark shape: GET and SET from clients
// connections kept alive.
type redisLoad struct {
	scenario string
	clients  int
}

var (
	redisThroughput = redisLoad{"redis-benchmark, 20 clients", 20}
	redisLatency    = redisLoad{"redis-benchmark, 1 client", 1}
)

func (l redisLoad) args(addr, n string) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"-h", host, "-p", port, "-c", strconv.Itoa(l.clients), "-n", n,
		"-t", "set,get", "--csv", "-q"}
}

// command is the redis-benchmark command line as a user would type it.
func (l redisLoad) command() string {
	return "redis-benchmark " + strings.Join(l.args("127.0.0.1:PORT", "N"), " ")
}

// redisTest is one test's line of redis-benchmark --csv.
type redisTest struct {
	rps float64
	p50 float64 // ms; 0 when the version does not report it
}

// parseRedisCSV reads redis-benchmark --csv output: a header
// ("test","rps","avg_latency_ms",...,"p50_latency_ms",...) and a line per
// test since Redis 7, or bare "TEST","rps" lines before. Other lines
// (warnings) are skipped.
func parseRedisCSV(out string) (map[string]redisTest, error) {
	col := map[string]int{"rps": 1}
	tests := map[string]redisTest{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, `"`) {
			continue
		}
		f, err := csv.NewReader(strings.NewReader(line)).Read()
		if err != nil || len(f) < 2 {
			continue
		}
		if f[0] == "test" {
			col = map[string]int{}
			for i, name := range f {
				col[name] = i
			}
			continue
		}
		var t redisTest
		i, ok := col["rps"]
		if !ok || i >= len(f) {
			return nil, fmt.Errorf("parsing redis-benchmark output: no rps column:\n%s", out)
		}
		if t.rps, err = strconv.ParseFloat(f[i], 64); err != nil {
			return nil, fmt.Errorf("parsing redis-benchmark output: rps %q of %s", f[i], f[0])
		}
		if i, ok := col["p50_latency_ms"]; ok && i < len(f) {
			if t.p50, err = strconv.ParseFloat(f[i], 64); err != nil {
				return nil, fmt.Errorf("parsing redis-benchmark output: p50 %q of %s", f[i], f[0])
			}
		}
		tests[strings.ToUpper(f[0])] = t
	}
	for _, want := range []string{"GET", "SET"} {
		if _, ok := tests[want]; !ok {
			return nil, fmt.Errorf("parsing redis-benchmark output: no %s line:\n%s", want, out)
		}
	}
	return tests, nil
}

// runRedisBenchmark runs n GETs and n SETs of load against addr.
func runRedisBenchmark(ctx context.Context, load redisLoad, addr string, n int, limit time.Duration) (map[string]redisTest, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-benchmark", load.args(addr, strconv.Itoa(n))...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("running redis-benchmark: %w\n%s", err, out)
	}
	return parseRedisCSV(string(out))
}

// redisApp is the redis-server app of the main daemon: persistence off,
// the loopback only, run as the redis account under a root bench. No
// password: redis-benchmark takes it only on its command line, which
// every local user can read; what a stranger reaching the port could do
// is bounded instead (the account, and the configuration CONFIG SET cannot
// change: dir, modules, DEBUG).
func (b *bench) redisApp() (app, error) {
	s, err := newService(b.svc, "redis", "redis")
	if err != nil {
		return app{}, err
	}
	addr := freeAddr()
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf("bind 127.0.0.1\nport %s\nprotected-mode yes\ndaemonize no\nlogfile \"\"\ndir %s\nsave \"\"\nappendonly no\n", port, s.dir)
	if redisMajor(firstLine(lookTool("redis-server"), "--version")) >= 7 {
		// Named since Redis 7 (and its defaults): an older server
		// refuses the unknown directives.
		conf += "enable-protected-configs no\nenable-debug-command no\nenable-module-command no\n"
	}
	path, err := s.writeFile("redis.conf", conf)
	if err != nil {
		return app{}, err
	}
	b.redisAddr = map[string]string{direct: addr, dynapm: freeAddr()}
	return app{name: "redis", listen: b.redisAddr[dynapm], upstream: addr,
		command: []string{lookTool("redis-server"), path}, extra: s.appExtra()}, nil
}

// redisMajor reads the major version from "Redis server v=7.0.15 sha=...";
// 0 when there is none.
func redisMajor(version string) int {
	for _, f := range strings.Fields(version) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			major, _, _ := strings.Cut(v, ".")
			n, _ := strconv.Atoi(major)
			return n
		}
	}
	return 0
}

// redisScenario runs redis-benchmark, GET and SET, at 20 clients for
// throughput and at 1 for latency, against every target alternately.
func (b *bench) redisScenario(ctx context.Context) error {
	if b.redisAddr == nil {
		return nil
	}
	for _, load := range []redisLoad{redisThroughput, redisLatency} {
		// A request count that lasts about -duration through the slowest
		// target (one client through a proxy runs at a fifth of direct).
		rate := math.Inf(1)
		for _, t := range b.present() {
			probe, err := runRedisBenchmark(ctx, load, b.redisAddr[t], 2000, time.Minute)
			if err != nil {
				return fmt.Errorf("%s through %s: %w", load.scenario, t, err)
			}
			rate = min(rate, probe["GET"].rps, probe["SET"].rps)
		}
		n := min(max(int(rate*b.cfg.dur.Seconds()/2), 2000), 5_000_000)
		limit := 10*b.cfg.dur + time.Minute
		get, set := map[string][]sample{}, map[string][]sample{}
		for rep := 0; rep < b.cfg.runs; rep++ {
			for _, t := range order(b.present(), rep) {
				m := startMeter(b.proxyPid(t))
				res, err := runRedisBenchmark(ctx, load, b.redisAddr[t], n, limit)
				if err != nil {
					return fmt.Errorf("%s through %s: %w", load.scenario, t, err)
				}
				c := m.stop()
				for name, into := range map[string]map[string][]sample{"GET": get, "SET": set} {
					// CPU is charged per request of both tests.
					s := sample{value: res[name].rps, p50: res[name].p50 * 1e3, ops: float64(2 * n)}
					s.charge(c)
					into[t] = append(into[t], s)
				}
				progress("%-27s %-7s rep %d: GET %8.0f/s p50 %5.0fµs  SET %8.0f/s p50 %5.0fµs  machine %5.1fµs/op",
					load.scenario, t, rep+1, res["GET"].rps, res["GET"].p50*1e3, res["SET"].rps, res["SET"].p50*1e3,
					c.machine.Seconds()/float64(2*n)*1e6)
			}
		}
		rate1 := func(s sample) float64 { return s.value }
		p50 := func(s sample) float64 { return s.p50 }
		g := scenarioRows{rep: b.rep, scenario: load.scenario, samples: get}
		s := scenarioRows{rep: b.rep, scenario: load.scenario, samples: set}
		if load == redisThroughput {
			g.add(warmRow{metric: "GET requests", unit: "req/s", goal: "dynapm/haproxy >= 1.1", chart: "redis GET/s", key: keyRedisGet}, rate1, true)
			s.add(warmRow{metric: "SET requests", unit: "req/s", goal: "dynapm/haproxy >= 1.1", key: keyRedisSet}, rate1, true)
			g.cpu("request", "µs", 1e6, "dynapm <= haproxy", keyRedisCPU)
			continue
		}
		g.add(warmRow{metric: "GET p50", unit: "µs", lowerBetter: true}, p50, true)
		s.add(warmRow{metric: "SET p50", unit: "µs", lowerBetter: true}, p50, true)
		g.overDirect(warmRow{metric: "GET p50 added over direct", unit: "µs", lowerBetter: true, goal: "dynapm <= haproxy"}, p50)
		g.add(warmRow{metric: "GET requests", unit: "req/s"}, rate1, true)
	}
	return nil
}
