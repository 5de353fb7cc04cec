package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// pgbenchClients and pgbenchThreads shape the select-only load.
const (
	pgbenchClients = 8
	pgbenchThreads = 2
)

// pgServer is the PostgreSQL cluster of the pgbench scenario.
type pgServer struct {
	bin      string // PostgreSQL's program directory
	svc      *service
	password string // of the postgres role, for TCP connections
}

// pgbenchResult is what one pgbench run reported.
type pgbenchResult struct {
	tps          float64 // without the initial connection time
	transactions float64
	failed       float64
	latency      float64 // average, ms
}

// parsePgbench reads pgbench's summary: "tps = N (without initial
// connection time)" since PostgreSQL 14, "tps = N (excluding connections
// establishing)" before.
func parsePgbench(out string) (pgbenchResult, error) {
	var r pgbenchResult
	var anyTPS float64
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		number := func(s string) float64 {
			f := strings.Fields(s)
			if len(f) == 0 {
				return 0
			}
			v, _ := strconv.ParseFloat(f[0], 64)
			return v
		}
		switch {
		case strings.HasPrefix(line, "tps = "):
			v := number(strings.TrimPrefix(line, "tps = "))
			if strings.Contains(line, "without initial connection") || strings.Contains(line, "excluding connections") {
				r.tps = v
			} else if anyTPS == 0 {
				anyTPS = v
			}
		case strings.HasPrefix(line, "number of transactions actually processed:"):
			// "N" or, with -t, "N/M".
			v := strings.TrimSpace(strings.TrimPrefix(line, "number of transactions actually processed:"))
			v, _, _ = strings.Cut(v, "/")
			r.transactions = number(v)
		case strings.HasPrefix(line, "number of failed transactions:"):
			r.failed = number(strings.TrimPrefix(line, "number of failed transactions:"))
		case strings.HasPrefix(line, "latency average = "):
			r.latency = number(strings.TrimPrefix(line, "latency average = "))
		}
	}
	if r.tps == 0 {
		r.tps = anyTPS
	}
	if r.tps == 0 || r.transactions == 0 {
		return r, fmt.Errorf("parsing pgbench output: no tps or transactions:\n%s", out)
	}
	return r, nil
}

// pgbenchArgs is a select-only load of d on the cluster at addr.
func pgbenchArgs(addr string, d time.Duration) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"-S", "-n", "-c", strconv.Itoa(pgbenchClients), "-j", strconv.Itoa(pgbenchThreads),
		"-T", strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))),
		"-h", host, "-p", port, "-U", "postgres", "postgres"}
}

func pgbenchCommand(d time.Duration) string {
	return "pgbench " + strings.Join(pgbenchArgs("127.0.0.1:PORT", d), " ") + "   # after pgbench -i -s 1"
}

// pgbench runs PostgreSQL's pgbench with args; the password goes through
// the environment, which other users cannot read.
func (p *pgServer) pgbench(ctx context.Context, limit time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "pgbench"), args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+p.password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("running pgbench %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// pgApp creates a throwaway cluster (initdb, as the postgres account under
// a root bench: postgres refuses root) and returns the app that runs its
// server. TCP connections need the postgres role's random password, so
// that other local users cannot use the server while the bench runs.
func (b *bench) pgApp() (app, error) {
	svc, err := newService(b.svc, "postgres", "postgres")
	if err != nil {
		return app{}, err
	}
	p := &pgServer{bin: pgBinDir(), svc: svc, password: secret()}
	pwfile, err := svc.writeFile("pwfile", p.password+"\n")
	if err != nil {
		return app{}, err
	}
	data := filepath.Join(svc.dir, "data")
	cmd := exec.Command(filepath.Join(p.bin, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = svc.dir
	cmd.SysProcAttr = credAttr(svc)
	out, err := cmd.CombinedOutput()
	_ = os.Remove(pwfile)
	if err != nil {
		return app{}, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	addr := freeAddr()
	_, port, _ := net.SplitHostPort(addr)
	b.pg = p
	b.pgAddr = map[string]string{direct: addr, dynapm: freeAddr()}
	// fsync off: a throwaway cluster, and only pgbench -i writes.
	return app{name: "postgres", listen: b.pgAddr[dynapm], upstream: addr,
		command: []string{filepath.Join(p.bin, "postgres"), "-D", data, "-p", port,
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + svc.dir, "-c", "fsync=off"},
		// SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients).
		extra: svc.appExtra() + "stop_signal: SIGINT\n"}, nil
}

// pgInit waits until the cluster accepts queries and fills pgbench's
// tables.
func (b *bench) pgInit(ctx context.Context) error {
	const limit = time.Minute
	isReady := filepath.Join(b.pg.bin, "pg_isready")
	host, port, _ := net.SplitHostPort(b.pgAddr[direct])
	if err := pollUntil(limit, func() bool {
		return exec.Command(isReady, "-q", "-h", host, "-p", port).Run() == nil
	}); err != nil {
		return fmt.Errorf("postgres did not accept connections: %w (its log is in %s)", err, b.daemon.logPath)
	}
	_, err := b.pg.pgbench(ctx, limit, "-i", "-s", "1", "-q", "-h", host, "-p", port, "-U", "postgres", "postgres")
	return err
}

// pgbenchScenario runs pgbench -S (select only, 8 clients, connections
// kept) against every target alternately.
func (b *bench) pgbenchScenario(ctx context.Context) error {
	if b.pg == nil {
		return nil
	}
	if err := b.pgInit(ctx); err != nil {
		return err
	}
	samples := map[string][]sample{}
	for rep := 0; rep < b.cfg.runs; rep++ {
		for _, t := range order(b.present(), rep) {
			m := startMeter(b.proxyPid(t))
			out, err := b.pg.pgbench(ctx, b.cfg.dur+time.Minute, pgbenchArgs(b.pgAddr[t], b.cfg.dur)...)
			if err != nil {
				return fmt.Errorf("pgbench through %s: %w", t, err)
			}
			r, err := parsePgbench(out)
			if err != nil {
				return fmt.Errorf("pgbench through %s: %w", t, err)
			}
			s := sample{value: r.tps, avg: r.latency * 1e3, ops: r.transactions, errors: r.failed}
			s.charge(m.stop())
			progress("pgbench -S     %-7s rep %d: %8.0f tps  latency %5.0fµs  machine %5.1fµs/tx  failed %.0f",
				t, rep+1, r.tps, s.avg, s.machine/s.ops*1e6, r.failed)
			if r.failed > 0 {
				b.rep.note("pgbench through %s: %.0f failed transactions in repetition %d", t, r.failed, rep+1)
			}
			samples[t] = append(samples[t], s)
		}
	}
	rows := scenarioRows{rep: b.rep, scenario: fmt.Sprintf("pgbench -S, %d clients", pgbenchClients), samples: samples}
	rows.add(warmRow{metric: "transactions", unit: "tps", goal: "dynapm/haproxy >= 1", chart: "pgbench -S tps", key: keyPgbench},
		func(s sample) float64 { return s.value }, true)
	rows.add(warmRow{metric: "latency average", unit: "µs", lowerBetter: true}, func(s sample) float64 { return s.avg }, true)
	rows.cpu("transaction", "µs", 1e6, "dynapm <= haproxy", keyPgbenchCPU)
	return nil
}
