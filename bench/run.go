package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// bench is one benchmark run's shared state: the tools, the programs and
// the main daemon with its apps.
type bench struct {
	cfg        *config
	rep        *report
	work       string
	dynapmBin  string
	backendBin string
	testappBin string // internal/testapp: the instances scenario's CPU-bound program
	python     string
	hasWrk     bool

	daemon *daemonProc
	haprox *haproxyProc
	nginx  *nginxProc // while the udp scenario runs

	// Addresses: the HTTP and bulk backends (direct), and the same through
	// dynapm and haproxy.
	httpAddr map[string]string
	bulkAddr map[string]string
	// The real servers' addresses (nil: the scenario is skipped), and
	// the directory their data lives in.
	redisAddr map[string]string
	pgAddr    map[string]string
	pg        *pgServer
	svc       string
	bulkPid   string // the bulk backend's pidfile
	cold      []coldProgram
	// frozen is the frozen scenario's app, frozenPid its program's
	// pidfile.
	frozen    app
	frozenPid string
	herdApp   app
	herdLog   string
	shared    sharedAddrs
	// udpAddr: the UDP echo's own address, and the same through dynapm
	// and nginx; udpCold: the UDP app woken by the first datagram.
	udpAddr map[string]string
	udpCold coldProgram
	// handoffAddr: the HTTP backend handed its socket (handoff: socket).
	handoffAddr string
}

// run builds and starts everything, measures every scenario asked for,
// prints the report and writes the markdown and chart when asked.
func run(c *config) error {
	b := &bench{cfg: c, rep: &report{started: time.Now()}}
	b.tools()
	b.rep.machine = describeMachine()
	b.hasWrk = b.rep.machine.wrk != ""

	var err error
	b.work, err = os.MkdirTemp("", "dynapm-bench-")
	if err != nil {
		return err
	}
	if c.keep {
		defer progress("kept %s", b.work)
	} else {
		defer os.RemoveAll(b.work)
	}
	// The real servers' directories are their accounts' (see newService):
	// beside the work directory, which stays private to the bench.
	b.svc, err = os.MkdirTemp("", "dynapm-bench-servers-")
	if err != nil {
		return err
	}
	if err := os.Chmod(b.svc, 0o711); err != nil {
		return err
	}
	if c.keep {
		defer progress("kept %s", b.svc)
	} else {
		defer os.RemoveAll(b.svc)
	}
	if err := b.build(); err != nil {
		return err
	}
	if err := b.startMain(); err != nil {
		return err
	}
	defer func() {
		if b.haprox != nil {
			b.haprox.stop()
		}
		b.daemon.stop()
	}()

	ctx := context.Background()
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		// The cold path first: the warm path's connection churn leaves
		// tens of thousands of TIME_WAIT sockets on the loopback for a
		// minute, during which some connects stall on SYN retransmits.
		{"cold", b.coldScenario},
		{"frozen", b.frozenScenario},
		{"herd", b.herdScenario},
		{"scale", b.scaleScenario},
		{"reload", b.reloadScenario},
		{"instances", b.instancesScenario},
		{"bulk", b.bulkScenario},
		{"placement", b.placementScenario},
		{"redis", b.redisScenario},
		{"pgbench", b.pgbenchScenario},
		{"warm", b.warm},
		{"handoff", b.handoffScenario},
		{"udp", b.udpScenario},
		{"shared", b.sharedScenario},
	}
	for _, s := range steps {
		if !c.want(s.name) {
			continue
		}
		progress("== %s", s.name)
		if err := s.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if c.syscalls && (c.want("warm") || c.want("bulk")) {
		progress("== syscalls")
		if err := b.syscallScenario(ctx); err != nil {
			return fmt.Errorf("syscalls: %w", err)
		}
	}
	b.rep.commands = b.commands()
	fmt.Print(b.rep.text())
	if c.out != "" {
		if err := b.rep.writeMarkdown(c.out, c.svg); err != nil {
			return err
		}
		if err := os.WriteFile(c.svg, []byte(b.rep.svg()), 0o644); err != nil {
			return err
		}
		progress("wrote %s and %s", c.out, c.svg)
	}
	return nil
}

// build compiles dynapm and copies this program as the backend binary, so
// that the backends are plain binaries even under "go run".
func (b *bench) build() error {
	b.dynapmBin = filepath.Join(b.work, "dynapm")
	if b.cfg.dynapm != "" {
		if err := copyFile(b.cfg.dynapm, b.dynapmBin); err != nil {
			return fmt.Errorf("copying -dynapm binary: %w", err)
		}
	} else {
		progress("building dynapm")
		if out, err := exec.Command("go", "build", "-o", b.dynapmBin, ".").CombinedOutput(); err != nil {
			return fmt.Errorf("building dynapm (run from the repository root): %v\n%s", err, out)
		}
	}
	b.testappBin = filepath.Join(b.work, "testapp")
	if out, err := exec.Command("go", "build", "-o", b.testappBin, "./internal/testapp").CombinedOutput(); err != nil {
		return fmt.Errorf("building internal/testapp (run from the repository root): %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b.backendBin = filepath.Join(b.work, "backend")
	return copyFile(self, b.backendBin)
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}

// startMain writes the main daemon's apps (persistent warm-path backends,
// on-demand cold and herd apps), starts it, and starts HAProxy in front of
// the same backends.
func (b *bench) startMain() error {
	dir := filepath.Join(b.work, "main")
	apps := filepath.Join(dir, "apps.d")
	if err := os.MkdirAll(apps, 0o755); err != nil {
		return err
	}
	b.httpAddr = map[string]string{direct: freeAddr(), dynapm: freeAddr()}
	b.bulkAddr = map[string]string{direct: freeAddr(), dynapm: freeAddr()}
	b.bulkPid = filepath.Join(dir, "bulk.pid")
	files := []app{
		{name: "http", listen: b.httpAddr[dynapm], upstream: b.httpAddr[direct],
			command: []string{b.backendBin, "-backend-http", b.httpAddr[direct]}, extra: "mode: persistent\n"},
		{name: "bulk", listen: b.bulkAddr[dynapm], upstream: b.bulkAddr[direct],
			command: []string{b.backendBin, "-backend", b.bulkAddr[direct], "-pidfile", b.bulkPid}, extra: "mode: persistent\n"},
	}
	b.herdLog = filepath.Join(dir, "herd.spawns")
	b.herdApp = app{name: "herd", listen: freeAddr(),
		command: []string{b.backendBin, "-backend", "127.0.0.1:${PORT}", "-spawnlog", b.herdLog},
		extra:   fmt.Sprintf("idle_timeout: 1s\nmax_pending: %d\n", b.cfg.herd+100)}
	files = append(files, b.herdApp)
	if b.cfg.want("shared") {
		files = append(files, b.sharedApps()...)
	}
	if b.cfg.want("udp") {
		files = append(files, b.udpApps()...)
	}
	if b.cfg.want("handoff") {
		files = append(files, b.handoffApp())
	}
	cold, err := b.coldPrograms(dir)
	if err != nil {
		return err
	}
	if b.cfg.want("frozen") {
		b.frozen = b.frozenApp(dir)
		files = append(files, b.frozen)
	}
	for _, p := range cold {
		files = append(files, p.app)
	}
	if b.cfg.want("redis") && lookTool("redis-server") != "" && lookTool("redis-benchmark") != "" {
		a, err := b.redisApp()
		if err != nil {
			b.rep.note("redis-benchmark scenario skipped: %v", err)
			progress("redis: skipped: %v", err)
		} else {
			files = append(files, a)
		}
	}
	if b.cfg.want("pgbench") && lookTool("pgbench") != "" {
		a, err := b.pgApp()
		if err != nil {
			b.rep.note("pgbench scenario skipped: %v", err)
			progress("pgbench: skipped: %v", err)
		} else {
			files = append(files, a)
		}
	}
	b.cold = cold
	for _, a := range files {
		if err := a.write(apps); err != nil {
			return err
		}
	}
	progress("starting dynapm")
	b.daemon, _, err = startDaemon(b.dynapmBin, dir, 30*time.Second)
	if err != nil {
		return err
	}
	persistent := [][2]string{{"http", b.httpAddr[direct]}, {"bulk", b.bulkAddr[direct]}}
	if b.cfg.want("shared") {
		persistent = append(persistent, [2]string{"tls-own", b.shared.tls[direct]})
	}
	if b.redisAddr != nil {
		persistent = append(persistent, [2]string{"redis", b.redisAddr[direct]})
	}
	if b.pgAddr != nil {
		persistent = append(persistent, [2]string{"postgres", b.pgAddr[direct]})
	}
	for _, p := range persistent {
		if err := waitDial(p[1], 30*time.Second); err != nil {
			b.daemon.stop()
			return fmt.Errorf("persistent app %s did not listen on %s (see %s): %w", p[0], p[1], b.daemon.logPath, err)
		}
	}
	if _, err := exec.LookPath("haproxy"); err == nil {
		var listens [][2]string
		for _, m := range []map[string]string{b.httpAddr, b.bulkAddr, b.redisAddr, b.pgAddr} {
			if m != nil {
				m[haproxy] = freeAddr()
				listens = append(listens, [2]string{m[haproxy], m[direct]})
			}
		}
		b.haprox, err = startHAProxy(dir, listens)
		if err != nil {
			b.daemon.stop()
			return err
		}
		b.rep.haproxy = b.haprox.config
	}
	return nil
}

// proxyPid is the process whose CPU a target's load is charged to.
func (b *bench) proxyPid(target string) int {
	switch target {
	case dynapm:
		return b.daemon.pid()
	case haproxy:
		return b.haprox.pid()
	}
	return 0
}

// present lists the targets this run can measure.
func (b *bench) present() []string {
	if b.haprox == nil {
		return []string{direct, dynapm}
	}
	return targets
}

// order rotates the targets per repetition, so that none always runs first
// (or right after another) on a machine whose load drifts.
func order(ts []string, rep int) []string {
	out := make([]string, len(ts))
	for i := range ts {
		out[i] = ts[(i+rep)%len(ts)]
	}
	return out
}

func waitDial(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
