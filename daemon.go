package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/admin"
	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/applog"
	"github.com/dynapm/dynapm/appsdir"
	"github.com/dynapm/dynapm/cron"
	execdriver "github.com/dynapm/dynapm/driver/exec"
	"github.com/dynapm/dynapm/driver/exec/cgroup"
	"github.com/dynapm/dynapm/driver/exec/spawner"
	"github.com/dynapm/dynapm/internal/httpcap"
	"github.com/dynapm/dynapm/internal/trust"
	"github.com/dynapm/dynapm/l4"
	"github.com/dynapm/dynapm/lifecycle"
	"github.com/dynapm/dynapm/memory"
	"github.com/dynapm/dynapm/metrics"
	"github.com/dynapm/dynapm/sdnotify"
	"github.com/dynapm/dynapm/settings"
)

// Interface guards. Each consumer owns the interface it needs, and l4,
// cron, memory and admin import nothing of lifecycle, so main, which wires
// the parts together, is where their fit is checked. l4 finds ConnWaker,
// ReadyWaker, PassiveWaker, TrafficWaker and EarlyWaker by a type
// assertion: without these lines a signature that drifted would silently
// turn those paths off.
var (
	_ l4.Waker          = (*lifecycle.Manager)(nil)
	_ l4.ConnWaker      = (*lifecycle.Manager)(nil)
	_ l4.ReadyWaker     = (*lifecycle.Manager)(nil)
	_ l4.PassiveWaker   = (*lifecycle.Manager)(nil)
	_ l4.TrafficWaker   = (*lifecycle.Manager)(nil)
	_ l4.HandoffWaker   = (*lifecycle.Manager)(nil)
	_ l4.InetdWaker     = (*lifecycle.Manager)(nil)
	_ l4.EarlyWaker     = (*lifecycle.Manager)(nil)
	_ cron.Waker        = (*lifecycle.Manager)(nil)
	_ memory.Apps       = (*lifecycle.Manager)(nil)
	_ lifecycle.Adopter = (*lifecycle.Manager)(nil)

	_ lifecycle.Events    = (*metrics.Metrics)(nil)
	_ l4.Observer         = (*metrics.Metrics)(nil)
	_ l4.UDPObserver      = (*metrics.Metrics)(nil)
	_ lifecycle.LogOpener = (*applog.Logs)(nil)
	_ lifecycle.LogTapper = (*applog.Logs)(nil)
	_ cron.LogOpener      = (*applog.Logs)(nil)
	_ admin.Controller    = (*adminController)(nil)
	_ lifecycle.Sockets   = (*l4.Server)(nil)
)

// shutdownGrace bounds how long an orderly shutdown waits for jobs,
// spliced connections and stopping apps before it gives up on them.
const shutdownGrace = 30 * time.Second

// daemon is the wiring of one running DynaPM: the proxy in front, the
// lifecycle manager behind it, the scheduler and the memory monitor
// driving the manager, and the apps.d watcher feeding them all.
type daemon struct {
	log    *slog.Logger
	driver *execdriver.Driver
	// sub is the cgroup subtree the exec driver's programs run in; nil
	// without cgroups.
	sub *cgroup.Subtree
	// spawner starts the exec driver's programs from a helper process
	// with a small descriptor table, once there are many apps (see
	// chooseSpawn); nil until then. spawnerOn: the driver uses it.
	spawner   *spawner.Client
	spawnerOn bool
	// spawnerFrom, when not 0, replaces the constant of that name (tests).
	spawnerFrom int
	// drivers are the other ways to run an app, by driver: name.
	drivers map[string]lifecycle.Driver
	mgr     *lifecycle.Manager
	sched   *cron.Scheduler
	mem     *memory.Monitor
	srv     *l4.Server
	// admin is the admin API on STATE/dynapm.sock; metrics the Prometheus
	// endpoint (nil when off); notify tells systemd how we are doing.
	admin *admin.Server
	ctl   *adminController
	// watcher follows apps.d; set once it has loaded it (the admin API
	// may read it before).
	watcher atomic.Pointer[appsdir.Watcher]
	met     *metrics.Metrics // nil when metrics are off
	metrics *metrics.Server
	notify  *sdnotify.Notifier
	// logs carries the apps' output into rotating STATE/logs/NAME.log.
	logs *applog.Logs
	// trust judges the app files (internal/trust): who can change them.
	// ownersOK are the specs last applied that ownerError accepted (only
	// apply uses it).
	trust    trust.Checker
	ownersOK map[*appfile.Spec]bool
	// table is the route table last put in force, names the apps in force
	// and inForce their specs; only apply uses them.
	table   map[string][]l4.Route
	names   map[string]bool
	inForce []*appfile.Spec
	// own are the addresses the daemon serves itself (metrics), which no
	// app may listen on.
	own []appfile.Reserved
	// accessLog is the access_log setting: the apps whose file does not
	// say otherwise log a line per connection.
	accessLog bool
	// stateDir is the state directory, which holds the socket files
	// picked for $SOCKET.
	stateDir string
	// bound, when set, is called by apply once the new addresses are
	// bound and before the manager hears of the new apps (tests).
	bound func()

	// Background loops (watcher, memory monitor) run under bgCtx and are
	// waited for by shutdown.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

// runDaemon starts everything, serves until ctx ends, then shuts down.
func runDaemon(ctx context.Context, s settings.Settings, log *slog.Logger) error {
	// What the daemon trusts, before anything starts: the settings file
	// it has read, the apps directory and the state directory (created
	// private when missing) must be the daemon's user's or root's alone.
	if err := checkTrusted(s); err != nil {
		return err
	}
	d := newDaemon(s, log)
	// The admin API first: it takes the state directory's lock, so that a
	// second daemon on the same state stops here, before it binds any
	// app's address.
	if err := d.serveAdmin(s); err != nil {
		return errors.Join(err, d.shutdown())
	}
	// With the state locked: the log directory, rid of what was planted.
	if err := d.logs.Prepare(); err != nil {
		return errors.Join(err, d.shutdown())
	}
	if err := d.contain(s); err != nil {
		return errors.Join(err, d.shutdown())
	}
	// With the state locked and before any app starts: stop what a
	// previous daemon that died left running (its reaper died with it),
	// so that no upstream port is still taken: every cgroup in the
	// subtree, and the process groups a daemon without cgroups recorded.
	runDir := filepath.Join(s.StateDir, "run")
	execdriver.StopStale(ctx, runDir, log)
	d.driver.StopLeftGroups(ctx)
	if err := d.driver.RecordGroups(runDir); err != nil {
		return errors.Join(err, d.shutdown())
	}

	// Pins and disables of the last daemon, before any app starts: a
	// disabled persistent app must not start at boot.
	d.ctl.restoreOverrides(log)

	// SIGHUP asks for a rescan; caught from before the first scan, so
	// that an early one never kills the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// The watcher loads apps.d and applies the first snapshot before it
	// returns; from then on every change to apps.d is applied as it comes.
	// An app file another user can change would run anything as the
	// daemon's user: the watcher judges the directory and the files.
	wcfg := appsdir.Config{Dir: s.AppsDir, Apply: d.apply, Logger: log, Trust: &d.trust}
	if d.met != nil {
		wcfg.Rejected = func(string, error) { d.met.ReloadErrors(1) }
	}
	w, err := appsdir.New(wcfg)
	if err != nil {
		return errors.Join(err, d.shutdown())
	}
	d.watcher.Store(w)
	d.sched.Start()
	d.background(func(ctx context.Context) {
		if err := w.Run(ctx); err != nil {
			// The directory can no longer be followed (removed, say):
			// keep serving what is in force rather than dropping it.
			log.Error("no longer following the apps dir; apps stay as they are", "err", err)
		}
	})
	d.background(d.mem.Run)
	log.Info("dynapm ready", "apps", len(w.Snapshot()), "apps_dir", s.AppsDir, "state_dir", s.StateDir, "event_loops", s.EventLoops,
		"containment", d.driver.Containment())
	if err := d.notify.Notify(sdnotify.Ready, sdnotify.Status(fmt.Sprintf("serving %d apps", len(w.Snapshot())))); err != nil {
		log.Warn("cannot tell systemd that dynapm is ready", "err", err)
	}
	for {
		select {
		case <-hup:
			w.Rescan()
		case <-ctx.Done():
			log.Info("dynapm shutting down")
			if err := d.notify.Notify(sdnotify.Stopping); err != nil {
				log.Warn("cannot tell systemd that dynapm is stopping", "err", err)
			}
			hurry, stop := secondSignal(log)
			defer stop()
			return d.shutdownBy(hurry)
		}
	}
}

// contain chooses how the exec driver holds every app's processes (the
// containment setting): a cgroup per program under the daemon's subtree
// where cgroup v2 is usable, else process groups with the daemon as the
// child subreaper.
func (d *daemon) contain(s settings.Settings) error {
	if s.Containment == settings.ContainProcessGroup {
		return d.driver.UseSubreaper()
	}
	sub, err := cgroup.Open(cgroup.Config{Name: subtreeName(s.StateDir)})
	if err != nil {
		if s.Containment == settings.ContainCgroup {
			return fmt.Errorf("containment: cgroup: %w", err)
		}
		d.log.Info("apps are contained by process group", "reason", err)
		return d.driver.UseSubreaper()
	}
	if sub.Delegated() {
		d.log.Info("cgroup subtree delegated by systemd", "path", sub.Path())
	}
	d.sub = sub
	d.driver.UseCgroups(sub)
	return nil
}

// subtreeName is the cgroup subtree's name in the cgroup2 mount (when
// systemd does not delegate one): dynapm and a digest of the state
// directory, since a daemon stops every group in its subtree at start and
// two daemons on one machine must not stop each other's apps.
func subtreeName(stateDir string) string {
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs
	}
	sum := sha256.Sum256([]byte(stateDir))
	return cgroup.DefaultName + "-" + hex.EncodeToString(sum[:6])
}

// secondSignal returns a context that ends at the next SIGINT or SIGTERM
// (the impatient user's "stop now", which kills every app at once) and
// the function that stops listening for it.
func secondSignal(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			log.Warn("second signal: killing every app now", "signal", sig.String())
			cancel()
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}

// checkTrusted refuses to run with a settings file, an apps directory or
// a state directory that anyone but root and the daemon's user could
// change (internal/trust), naming the path at fault and the fix. It
// creates the state directory (mode 0700) when it is missing.
func checkTrusted(s settings.Settings) error {
	c := trust.New()
	if s.File != "" {
		if err := c.File(s.File, "settings file"); err != nil {
			return err
		}
	}
	if err := c.Dir(s.AppsDir, "apps directory"); err != nil {
		return err
	}
	return admin.MakeStateDir(s.StateDir)
}

// spawnerFrom is the number of listen addresses from which the exec
// driver starts programs through the spawner helper. Every fork and exec
// from the daemon closes its listening sockets again in the child (see
// package spawner), a cost that grows with the sockets, while a start
// through the helper costs a fixed round trip more: the helper pays only
// with thousands of sockets (docs/BENCHMARKS.md, spawner helper;
// spawner.BenchmarkStart measures both).
const spawnerFrom = 2000

// chooseSpawn starts programs through the spawner helper when the daemon
// listens on spawnerFrom addresses or more (starting the helper the first
// time), and from the daemon itself below. Only apply calls it.
func (d *daemon) chooseSpawn(listeners int) {
	from := spawnerFrom
	if d.spawnerFrom > 0 {
		from = d.spawnerFrom
	}
	if listeners < from {
		if d.spawnerOn {
			d.driver.UseSpawner(nil)
			d.spawnerOn = false
		}
		return
	}
	if d.spawnerOn {
		return
	}
	if d.spawner == nil {
		// /proc/self/exe: this very binary, even if the file was
		// replaced since.
		sp, err := spawner.Start("/proc/self/exe")
		if err != nil {
			d.log.Warn("cannot start the spawner helper; programs are started from the daemon", "err", err)
			return
		}
		d.spawner = sp
	}
	d.log.Info("starting programs through the spawner helper", "listeners", listeners, "from", from)
	d.driver.UseSpawner(d.spawner)
	d.spawnerOn = true
}

// newDaemon builds the parts and connects them; nothing runs yet.
func newDaemon(s settings.Settings, log *slog.Logger) *daemon {
	// The state directory exists by now: trust resolves it to compare.
	d := &daemon{log: log, trust: trust.New(s.StateDir), stateDir: s.StateDir}
	d.bgCtx, d.bgCancel = context.WithCancel(context.Background())
	d.driver = execdriver.New(log)
	d.drivers = otherDrivers(log)
	keep := s.AppLogs.Keep
	if keep == 0 {
		keep = -1 // applog: none kept
	}
	d.logs = applog.New(applog.Config{
		Dir:        filepath.Join(s.StateDir, "logs"),
		MaxBytes:   s.AppLogs.MaxSize,
		MaxBackups: keep,
		Compress:   s.AppLogs.Compress,
		Logger:     log,
	})
	var events lifecycle.Events
	if s.Metrics != "" {
		d.met = metrics.New(func() []admin.App { return d.ctl.Apps() })
		events = d.met
	}
	d.mgr = lifecycle.NewManager(lifecycle.Config{
		StateDir: s.StateDir,
		Logs:     d.logs,
		Events:   events,
		Logger:   log,
		Driver:   d.driver,
		Drivers:  d.drivers,
		// Before a start, stop other apps if memory is short, using the
		// app's last observed peak as its expected size.
		BeforeStart: func(ctx context.Context, app string) { d.mem.MakeRoom(ctx, app) },
		// A socket file's readiness counts only its program's user
		// listening there, as l4's connects do.
		SocketOwner: func(s *appfile.Spec) (uint32, error) { return programUID(s, os.Geteuid()) },
		// A ready.command runs as the app's program does, guarded alike.
		StartGroup: d.driver.StartGroup,
		Sockets:    serverSockets{d},
	})
	// The monitor runs even without a floor or budget: memory_max needs it.
	d.mem = memory.NewMonitor(memory.MonitorConfig{
		Policy: memory.Policy{
			MinAvailableBytes:   s.Memory.MinAvailableBytes,
			MinAvailablePercent: s.Memory.MinAvailablePercent,
			Budget:              s.Memory.Budget,
		},
		Interval: s.Memory.Interval,
		Apps:     d.mgr,
		Logger:   log,
	})
	d.sched = cron.New(cron.Config{Waker: d.mgr, Logger: log, Logs: d.logs,
		// A job's process group dies with the daemon, like an app's.
		StartGroup: d.driver.StartGroup})
	d.srv = &l4.Server{Waker: d.mgr, Logger: log, EventLoops: s.EventLoops, RefusalReason: refusalReason,
		// A unix: listen's file is made and removed only where nobody
		// but root and the daemon's user can change what is there.
		CheckSocketDir: func(dir string) error { return d.trust.Dir(dir, socketDirWhat) }}
	d.accessLog = s.AccessLog
	if d.met != nil {
		d.srv.Observer = d.met
	}
	d.ctl = &adminController{mgr: d.mgr, rss: d.mem.LastRSS, sched: d.sched, stateDir: s.StateDir, refused: func() []appsdir.Refused {
		if w := d.watcher.Load(); w != nil {
			return w.Refused()
		}
		return nil
	}}
	d.notify = sdnotify.FromEnv()
	// Only the daemon talks to systemd (the unit has NotifyAccess=main):
	// apps, jobs and the reaper must not inherit the socket, which is what
	// sd_notify's unset_environment does.
	os.Unsetenv("NOTIFY_SOCKET")
	return d
}

// serveAdmin starts the admin API and, when configured, the metrics
// endpoint.
func (d *daemon) serveAdmin(s settings.Settings) error {
	var err error
	d.admin, err = admin.Serve(admin.Config{
		StateDir:   s.StateDir,
		LogDir:     filepath.Join(s.StateDir, "logs"),
		Controller: d.ctl,
		Logger:     d.log,
	})
	if err != nil {
		return fmt.Errorf("starting the admin API: %w", err)
	}
	return d.serveMetrics(s)
}

// serveMetrics starts the metrics endpoint when configured, and keeps
// apps off its address.
func (d *daemon) serveMetrics(s settings.Settings) error {
	if d.met == nil {
		return nil
	}
	var err error
	if d.metrics, err = metrics.Serve(s.Metrics, metricsSetting(s), d.met, d.log, httpcap.Limits{}); err != nil {
		return err
	}
	d.own = ownAddresses(d.metrics.Addr(), metricsSetting(s))
	return nil
}

// metricsSetting names the metrics setting for messages.
func metricsSetting(s settings.Settings) string {
	if s.File != "" {
		return "setting `metrics` in " + s.File
	}
	return "setting `metrics`"
}

// ownAddresses are the addresses the daemon serves itself, for
// appfile.CheckReserved: metrics at addr, configured by setting. (The
// admin API is a Unix socket, which no app can claim.)
func ownAddresses(addr, setting string) []appfile.Reserved {
	if addr == "" {
		return nil
	}
	return []appfile.Reserved{{Addr: addr, What: "the daemon's metrics address (" + setting + ")"}}
}

// background runs loop until shutdown.
func (d *daemon) background(loop func(context.Context)) {
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		loop(d.bgCtx)
	}()
}

// apply makes the proxy, the manager and the scheduler serve specs, each
// app that can be: an app it refuses (a file whose owner it does not
// trust, an address it cannot bind or that is the daemon's own) keeps the
// version in force before, or is left out, and its error is returned
// (appsdir.Config.Apply); it never keeps another app out. New listen
// addresses are bound first, without accepting on them, while the old
// ones stay open. Only then does the manager learn of the new apps, and
// only after that does the proxy accept on the new addresses and route to
// them: a client that connects as soon as an address is bound waits in the
// kernel's accept queue, and is never routed to an app the manager does
// not know yet. apply is called from one goroutine at a time.
func (d *daemon) apply(specs []*appfile.Spec) []appsdir.AppError {
	accepted := make(map[*appfile.Spec]bool, len(specs)+len(d.inForce))
	for _, s := range slices.Concat(specs, d.inForce) {
		if d.ownersOK[s] {
			accepted[s] = true
		}
	}
	// Each round refuses at least one more spec, and a refused spec falls
	// back to the version in force, whose addresses are bound already,
	// then to nothing: a few rounds at most.
	refused := map[*appfile.Spec]error{}
	cur := specs
	var table map[string][]l4.Route
	for {
		var errs map[*appfile.Spec]error
		table, errs = d.refusals(cur, accepted)
		if len(errs) == 0 {
			break
		}
		maps.Copy(refused, errs)
		cur = appsdir.KeepInForce(specs, d.inForce, func(s *appfile.Spec) bool { return refused[s] != nil })
	}
	d.ownersOK = accepted
	if d.bound != nil {
		d.bound()
	}
	d.chooseSpawn(len(table))
	names := make(map[string]bool, len(cur))
	for _, s := range cur {
		names[s.Name] = true
		if d.met != nil && !d.names[s.Name] {
			d.met.Keep(s.Name) // added (back): counted from its first start
		}
	}
	d.mgr.Apply(cur)
	d.sched.Apply(cur)
	// Accepts on the new addresses, swaps the routes of kept ones and
	// closes the addresses no app wants any more (and those bound for a
	// spec refused after all).
	d.srv.Apply(table)
	d.table = table
	for name := range d.names {
		if d.met != nil && !names[name] {
			// A removed app's series go, not to be scraped forever.
			d.met.Forget(name)
		}
	}
	d.names = names
	d.inForce = cur
	return appErrors(specs, cur, refused)
}

// refusals returns the route table of specs and why apply cannot put
// some of them in force: what the daemon's user may not give, owners it
// does not trust (specs in accepted are not judged again; those judged
// good are added), the daemon's own addresses, and addresses that cannot
// be bound (the others are bound, not accepted on, by then).
func (d *daemon) refusals(specs []*appfile.Spec, accepted map[*appfile.Spec]bool) (map[string][]l4.Route, map[*appfile.Spec]error) {
	errs := map[*appfile.Spec]error{}
	byName := make(map[string]*appfile.Spec, len(specs))
	for _, s := range specs {
		byName[s.Name] = s
	}
	unix, unixErrs := unixRoutes(specs, d.stateDir, d.trust.Batch())
	for _, ae := range append(privilegeErrors(specs, int(d.trust.UID)), ownerErrors(specs, d.trust.Batch(), accepted)...) {
		errs[byName[ae.App]] = ae.Err
	}
	for _, ae := range unixErrs {
		if errs[byName[ae.App]] == nil {
			errs[byName[ae.App]] = ae.Err
		}
	}
	for _, s := range specs {
		if err := appfile.CheckReserved(s, d.own); err != nil && errs[s] == nil {
			errs[s] = err
		}
	}
	if len(errs) > 0 {
		return nil, errs // judged without binding anything for them
	}
	table := routeTable(specs, d.accessLog, unix)
	failed := d.srv.Bind(table)
	if len(failed) > 0 && respelled(failed, d.table, table) {
		// localhost:80 replacing 127.0.0.1:80 can only bind once the
		// old spelling is closed: close the dropped addresses (the
		// others keep their routes), then bind again.
		d.srv.Apply(keptRoutes(d.table, table))
		failed = d.srv.Bind(table)
	}
	for _, ae := range bindErrors(specs, failed) {
		errs[byName[ae.App]] = ae.Err
	}
	return table, errs
}

// appErrors is the error of every spec apply did not put in force, with
// the version it kept instead.
func appErrors(specs, inForce []*appfile.Spec, refused map[*appfile.Spec]error) []appsdir.AppError {
	kept := make(map[string]*appfile.Spec, len(inForce))
	for _, s := range inForce {
		kept[s.Name] = s
	}
	var errs []appsdir.AppError
	for _, s := range specs {
		if err := refused[s]; err != nil {
			errs = append(errs, appsdir.AppError{App: s.Name, Err: err, InForce: kept[s.Name]})
		}
	}
	return errs
}

// bindErrors names the file and field of every address that failed.
func bindErrors(specs []*appfile.Spec, failed map[string]error) []appsdir.AppError {
	var errs []appsdir.AppError
	for _, s := range specs {
		for i, addr := range s.Listen {
			if err, ok := failed[addr]; ok {
				errs = append(errs, appsdir.AppError{App: s.Name,
					Err: &appfile.FieldError{File: s.File, Field: fmt.Sprintf("listen[%d]", i), Msg: listenError(addr, err)}})
				break
			}
		}
	}
	return errs
}

// keptRoutes returns the entries of prev whose address next keeps.
func keptRoutes(prev, next map[string][]l4.Route) map[string][]l4.Route {
	kept := make(map[string][]l4.Route, len(prev))
	for addr, routes := range prev {
		if _, ok := next[addr]; ok {
			kept[addr] = routes
		}
	}
	return kept
}

// respelled reports whether an address that failed to bind shares its port
// with an address being dropped, which may be what holds it.
func respelled(failed map[string]error, prev, next map[string][]l4.Route) bool {
	for addr := range failed {
		_, port, _ := net.SplitHostPort(addr)
		for old := range prev {
			if _, kept := next[old]; kept {
				continue
			}
			if _, oldPort, _ := net.SplitHostPort(old); oldPort == port {
				return true
			}
		}
	}
	return false
}

// serverSockets gives handoff programs the sockets of the l4 server, which
// is made after the manager that asks for them.
type serverSockets struct{ d *daemon }

func (s serverSockets) ListenFiles(addrs []string) ([]*os.File, error) {
	return s.d.srv.ListenFiles(addrs)
}

// routeTable maps every listen address to the routes of the apps on it.
// unix holds what the apps with socket files need (unixRoutes).
func routeTable(specs []*appfile.Spec, accessLog bool, unix map[*appfile.Spec]unixRoute) map[string][]l4.Route {
	table := make(map[string][]l4.Route)
	for _, s := range specs {
		logged := accessLog
		if s.AccessLog != nil {
			logged = *s.AccessLog
		}
		for _, addr := range s.Listen {
			r := l4.Route{
				App:           s.Name,
				SNI:           s.Match.SNI,
				Host:          s.Match.Host,
				ProxyProtocol: s.ProxyProtocol,
				StartTimeout:  s.StartTimeout,
				AccessLog:     logged,
				WakeFrom:      s.WakeFrom,
				// Quiet connections are closed by l4 alone.
				ClientIdleTimeout: s.ClientIdleTimeout,
				Socket:            unix[s].socket,
				UnixUpstream:      unix[s].upstream,
				UnixUpstreamUID:   unix[s].upstreamUID,
			}
			if s.IdleWhen == appfile.IdleNoTraffic {
				r.TrafficIdle = s.IdleTimeout
			}
			switch s.Handoff {
			case appfile.HandoffSocket:
				r.Handoff = l4.HandoffSocket
			case appfile.HandoffInetd:
				r.Handoff, r.MaxPrograms = l4.HandoffInetd, s.InetdMax()
			}
			if s.UnavailableReply != "" {
				r.UnavailableReply = []byte(s.UnavailableReply)
			}
			if _, proto := appfile.SplitProto(addr); proto == appfile.ProtoUDP {
				r.MaxPending, r.FlowTimeout = s.MaxPending, s.UDPFlowTimeout
			}
			table[addr] = append(table[addr], r)
		}
	}
	return table
}

// shutdown stops in order: the watcher and the memory monitor (no more
// changes), the listeners and held connections, the jobs (while the apps
// they may need are still up), every app, then the connections clients
// still hold open to the stopped apps, then the reaper.
func (d *daemon) shutdown() error {
	return d.shutdownBy(context.Background())
}

// shutdownBy is shutdown that gives up waiting, killing what is left, when
// hurry ends (a second SIGINT or SIGTERM).
func (d *daemon) shutdownBy(hurry context.Context) error {
	d.bgCancel()
	d.bg.Wait()
	ctx, cancel := context.WithTimeout(hurry, shutdownGrace)
	defer cancel()
	// Admin requests in progress end first: a start being waited for is
	// abandoned, a followed log ends.
	var admErr error
	if d.admin != nil {
		admErr = d.admin.Shutdown(ctx)
	}
	if d.metrics != nil {
		admErr = errors.Join(admErr, d.metrics.Shutdown(ctx))
	}
	// Spliced connections end when their app has stopped: a client that
	// holds an idle connection open must not hold the shutdown up.
	connCtx, closeConns := context.WithCancel(ctx)
	defer closeConns()
	srvDone := make(chan error, 1)
	go func() { srvDone <- d.srv.Shutdown(connCtx) }()
	// Every app stopped from here on would make its next start's cgroup
	// only for Close to remove it.
	d.driver.StopSpares()
	err := errors.Join(admErr, d.sched.Shutdown(ctx), d.mgr.Shutdown(ctx))
	closeConns()
	srvErr := <-srvDone
	if errors.Is(srvErr, context.Canceled) && ctx.Err() == nil {
		srvErr = nil // closed on purpose, the apps being gone
	}
	err = errors.Join(err, srvErr, d.driver.Close(), closeDrivers(d.drivers))
	if d.spawner != nil {
		// After the driver: every program it started has been stopped.
		err = errors.Join(err, d.spawner.Close())
	}
	if d.sub != nil {
		// Empty by now; a later daemon finds and stops what is not.
		if rerr := d.sub.Remove(); rerr != nil {
			d.log.Warn("cannot remove the cgroup subtree", "err", rerr)
		}
	}
	// Every app is gone: the last of their output drains into the files.
	// Briefly: only a process that left its group can still hold a pipe.
	logCtx, logCancel := context.WithTimeout(ctx, 2*time.Second)
	defer logCancel()
	err = errors.Join(err, d.logs.Close(logCtx))
	if err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	d.log.Info("dynapm stopped")
	return nil
}

// privilegeErrors names every app whose file asks for what a daemon running
// as euid cannot give: user and group need root.
func privilegeErrors(specs []*appfile.Spec, euid int) []appsdir.AppError {
	if euid == 0 {
		return nil
	}
	var errs []appsdir.AppError
	for _, s := range specs {
		field := ""
		switch {
		case s.User != "":
			field = "user"
		case s.Group != "":
			field = "group"
		default:
			continue
		}
		errs = append(errs, appsdir.AppError{App: s.Name, Err: &appfile.FieldError{File: s.File, Field: field,
			Msg: fmt.Sprintf("dynapm runs as uid %d, not root: it cannot run an app as another user; remove %s or run dynapm as root", euid, field)}})
	}
	return errs
}

// refusalReason names why the lifecycle manager could not serve a
// connection, for dynapm_app_refused_connections_total{reason}.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, lifecycle.ErrTooManyPending):
		return "max_pending"
	case errors.Is(err, lifecycle.ErrBackoff):
		return "backoff"
	case errors.Is(err, lifecycle.ErrStartTimeout):
		return "start_timeout"
	case errors.Is(err, lifecycle.ErrStartFailed):
		return "start_failed"
	case errors.Is(err, lifecycle.ErrShuttingDown):
		return "shutdown"
	case errors.Is(err, lifecycle.ErrUnknownApp):
		return "removed"
	case errors.Is(err, lifecycle.ErrDisabled):
		return "disabled"
	}
	return "other"
}
