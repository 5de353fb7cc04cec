// Command bench measures DynaPM, in one run on this machine, against a
// direct connection to the same backend and against HAProxy in TCP mode
// (nginx's stream module for UDP), and prints a report (and, with -out,
// writes it as markdown plus an SVG chart):
//
//   - keep-alive small requests, new connections and added latency (wrk
//     against a tiny HTTP/1.1 backend), bulk (one large download),
//     redis-benchmark against redis-server and pgbench -S against
//     PostgreSQL: direct vs dynapm vs haproxy, alternating, medians and
//     ranges of -runs repetitions, with the proxies' CPU time and the whole
//     machine's per request, connection, transaction or GB;
//   - placement: the bulk download with client, proxy and backend pinned
//     to two CPUs in every way;
//   - cold wake: connect-to-first-byte through DynaPM for a stopped app,
//     minus the same program's own start-to-first-byte (Go, and Python and
//     Node servers where installed);
//   - herd: many simultaneous first connections to a stopped app;
//   - scale: thousands of app files (ready time, RSS, idle CPU, wake time);
//   - reload: a new file to its listener accepting, an edit to the restarted
//     app answering, with a thousand other apps configured;
//   - instances: the request rate of a CPU-bound app at 1 and 2 instances;
//   - shared: new connections routed by HTTP Host or TLS SNI on a shared
//     port against a port of its own;
//   - handoff: the warm path's loads against the HTTP backend alone, with
//     handoff: socket and with handoff: proxy;
//   - udp: datagrams per second and round trips to a UDP echo, direct vs
//     dynapm vs nginx's stream module, and the UDP cold wake.
//
// It builds the dynapm binary, writes an apps.d in a temporary directory
// and uses a copy of its own executable as the backend programs (-backend,
// -backend-http), so that client, proxy and backend are separate processes,
// as in real use. All traffic stays on 127.0.0.1 and every load is bounded
// in count and time. HAProxy, wrk, Redis and PostgreSQL are used when
// installed (-install runs apt-get for them); scenarios that need a missing
// tool are skipped with a message.
//
// Usage: go run ./bench [-quick] [-runs 5] [-duration 5s] [-out docs/BENCHMARKS.md]
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// config is what one benchmark run measures, from the flags.
type config struct {
	runs  int
	dur   time.Duration
	bulk  int64
	wakes int
	// frozenIdle is how long the frozen scenario leaves its app frozen
	// to measure its CPU time.
	frozenIdle time.Duration
	herd       int
	scaleApps  int
	idle       time.Duration
	scaleWake  int
	// reload
	reloadOthers, reloads int
	// instances
	instances, instanceClients int
	instanceWork               time.Duration
	// shared
	sharedClients int
	out           string
	svg           string
	syscalls      bool
	install       bool
	keep          bool
	dynapm        string
	quick         bool
	only          map[string]bool
	args          []string
}

func (c *config) want(s string) bool { return len(c.only) == 0 || c.only[s] }

// wantAny reports whether any of the scenarios ss is to run.
func (c *config) wantAny(ss []string) bool {
	for _, s := range ss {
		if c.want(s) {
			return true
		}
	}
	return false
}

func main() {
	backend := flag.String("backend", "", "internal: run as the line backend (PING, BULK n) listening on this address")
	backendHTTP := flag.String("backend-http", "", "internal: run as the tiny HTTP/1.1 backend listening on this address")
	backendUDP := flag.String("backend-udp", "", "internal: run as the UDP echo backend listening on this address")
	backendTLS := flag.String("backend-tls", "", "internal: run as the TLS backend (PING over TLS) listening on this address")
	pidfile := flag.String("pidfile", "", "internal: backend writes its pid here once listening")
	spawnlog := flag.String("spawnlog", "", "internal: backend appends \"pid unix-nanos\" here once listening")
	bulkClientAddr := flag.String("bulk-client", "", "internal: download -bulk-bytes from this bulk backend address, pinned to -cpu")
	bulkBytes := flag.Int64("bulk-bytes", 1<<30, "internal: bytes for -bulk-client")
	clientCPU := flag.Int("cpu", -1, "internal: the CPU -bulk-client runs on (-1: any)")

	var c config
	flag.BoolVar(&c.quick, "quick", false, "a run of about a minute: shorter loads, one repetition, fewer wakes")
	flag.IntVar(&c.runs, "runs", 5, "repetitions of every warm-path measurement (medians are reported)")
	flag.DurationVar(&c.dur, "duration", 5*time.Second, "length of every wrk load")
	bulkMiB := flag.Int("bulk-mib", 2048, "MiB per bulk transfer")
	flag.IntVar(&c.wakes, "wakes", 31, "cold wakes per program (the median overhead is reported)")
	flag.DurationVar(&c.frozenIdle, "frozen-idle", time.Minute, "how long the frozen scenario leaves its app frozen to measure its CPU")
	flag.IntVar(&c.herd, "herd", 1000, "simultaneous first connections in the herd scenario")
	flag.IntVar(&c.scaleApps, "scale-apps", 10000, "app files in the scale scenario")
	flag.DurationVar(&c.idle, "idle", time.Minute, "idle period over which the scale daemon's CPU time is measured")
	flag.IntVar(&c.scaleWake, "scale-wakes", 7, "wakes per daemon in the scale scenario")
	flag.IntVar(&c.reloadOthers, "reload-others", 1000, "other app files configured in the reload scenario")
	flag.IntVar(&c.reloads, "reloads", 20, "new files and edits timed in the reload scenario")
	flag.IntVar(&c.instances, "instances", 2, "instances of the scaled run in the instances scenario")
	flag.IntVar(&c.instanceClients, "instance-clients", 8, "client connections in the instances scenario")
	flag.DurationVar(&c.instanceWork, "instance-work", time.Millisecond, "CPU time per request of the instances scenario's program")
	flag.IntVar(&c.sharedClients, "shared-clients", 8, "concurrent TLS clients in the shared-port scenario")
	flag.StringVar(&c.out, "out", "", "also write the report as markdown to this file (text between the bench markers is replaced)")
	flag.StringVar(&c.svg, "svg", "", "write the chart here (default: bench.svg next to -out)")
	flag.BoolVar(&c.syscalls, "syscalls", false, "also count the proxies' system calls and context switches per operation (perf stat, strace -c)")
	flag.StringVar(&c.dynapm, "dynapm", "", "measure this dynapm binary instead of building the one in the current directory (to compare a data path change)")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (logs, configs) and print its path")
	flag.BoolVar(&c.install, "install", false, "apt-get install what the scenarios need when missing (haproxy, wrk, nginx, libnginx-mod-stream, redis-server, redis-tools, postgresql)")
	only := flag.String("only", "", "comma-separated scenarios to run: warm,handoff,udp,bulk,redis,pgbench,placement,cold,frozen,herd,scale,reload,instances,shared (default all)")
	flag.Parse()

	switch {
	case *backend != "":
		err := serveBackend(*backend, *pidfile, *spawnlog)
		fmt.Fprintln(os.Stderr, "bench backend:", err)
		os.Exit(1)
	case *backendHTTP != "":
		err := serveHTTPBackend(*backendHTTP)
		fmt.Fprintln(os.Stderr, "bench http backend:", err)
		os.Exit(1)
	case *bulkClientAddr != "":
		if err := bulkClient(*bulkClientAddr, *bulkBytes, *clientCPU); err != nil {
			fmt.Fprintln(os.Stderr, "bench bulk client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case *backendUDP != "":
		err := serveUDPBackend(*backendUDP)
		fmt.Fprintln(os.Stderr, "bench udp backend:", err)
		os.Exit(1)
	case *backendTLS != "":
		err := serveTLSBackend(*backendTLS)
		fmt.Fprintln(os.Stderr, "bench tls backend:", err)
		os.Exit(1)
	}

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.bulk = int64(*bulkMiB) << 20
	if c.quick {
		// Explicit flags win over -quick's defaults.
		quick := map[string]func(){
			"runs":        func() { c.runs = 1 },
			"duration":    func() { c.dur = 2 * time.Second },
			"bulk-mib":    func() { c.bulk = 512 << 20 },
			"wakes":       func() { c.wakes = 5 },
			"frozen-idle": func() { c.frozenIdle = 5 * time.Second },
			"idle":        func() { c.idle = 3 * time.Second },
			"scale-wakes": func() { c.scaleWake = 3 },
			"reloads":     func() { c.reloads = 5 },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	if c.out != "" && c.svg == "" {
		c.svg = strings.TrimSuffix(c.out, "BENCHMARKS.md") + "bench.svg"
		if !strings.HasSuffix(c.out, "BENCHMARKS.md") {
			c.svg = c.out + ".svg"
		}
	}
	if *only != "" {
		c.only = map[string]bool{}
		for _, s := range strings.Split(*only, ",") {
			c.only[strings.TrimSpace(s)] = true
		}
	}
	c.args = os.Args[1:]
	if err := run(&c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
