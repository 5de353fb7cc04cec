package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/appsdir"
	"github.com/dynapm/dynapm/l4"
	"github.com/dynapm/dynapm/lifecycle"
	"github.com/dynapm/dynapm/settings"
)

// shutdownGrace bounds how long an orderly shutdown waits for spliced
// connections and stopping apps before it gives up on them.
const shutdownGrace = 30 * time.Second

// runCommand runs the daemon until SIGTERM or SIGINT.
func runCommand(args []string, stderr io.Writer) int {
	f := newFlags("run", stderr)
	if err := f.fs.Parse(args); err != nil {
		return 2
	}
	s, err := f.settings()
	if err != nil {
		fmt.Fprintln(stderr, "dynapm:", err)
		return 1
	}
	log, err := newLogger(s.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dynapm:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runDaemon(ctx, s, log); err != nil {
		log.Error("dynapm stopped with an error", "err", err)
		return 1
	}
	return 0
}

// newLogger builds the daemon's logger from the log settings.
func newLogger(ls settings.Log, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(ls.Level)); err != nil {
		return nil, fmt.Errorf("reading log level %q: %w", ls.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch ls.Format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: expected text or json", ls.Format)
	}
}

// daemon is the wiring of one running DynaPM: the proxy in front, the
// lifecycle manager behind it.
type daemon struct {
	log     *slog.Logger
	appsDir string
	driver  *lifecycle.ExecDriver
	mgr     *lifecycle.Manager
	srv     *l4.Server
	// table is the route table last put in force; only apply uses it.
	table map[string][]l4.Route
}

// runDaemon starts everything, serves until ctx ends, then shuts down in
// order: stop accepting and drop held connections, stop every app (which
// ends the spliced connections), then wait for the proxy to drain.
func runDaemon(ctx context.Context, s settings.Settings, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Join(s.StateDir, "logs"), 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	d := &daemon{log: log, appsDir: s.AppsDir}
	d.driver = lifecycle.NewExecDriver(log)
	d.mgr = lifecycle.NewManager(lifecycle.Config{
		StateDir: s.StateDir,
		Logger:   log,
		Driver:   d.driver,
	})
	d.srv = &l4.Server{Waker: d.mgr, Logger: log}

	// SIGHUP asks for a rescan; caught from before the first scan, so
	// that an early one never kills the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// The watcher loads apps.d and applies the first snapshot before it
	// returns; from then on every change to apps.d is applied as it comes.
	w, err := appsdir.New(appsdir.Config{Dir: s.AppsDir, Apply: d.apply, Logger: log})
	if err != nil {
		d.shutdown()
		return err
	}
	watchCtx, stopWatching := context.WithCancel(context.Background())
	watchDone := make(chan error, 1)
	go func() { watchDone <- w.Run(watchCtx) }()
	log.Info("dynapm ready", "apps", len(w.Snapshot()), "apps_dir", s.AppsDir, "state_dir", s.StateDir)

	for running := true; running; {
		select {
		case <-hup:
			w.Rescan()
		case err := <-watchDone:
			// The directory can no longer be followed (removed, say):
			// keep serving what is in force rather than dropping it.
			log.Error("no longer following the apps dir; apps stay as they are", "err", err)
			watchDone = nil
		case <-ctx.Done():
			running = false
		}
	}
	log.Info("dynapm shutting down")
	stopWatching()
	if watchDone != nil {
		<-watchDone
	}
	return d.shutdown()
}

// apply makes the proxy and the manager serve exactly specs. New listen
// addresses are bound first, while the old ones stay open: an app whose new
// address cannot be bound is reported back, and the watcher calls apply
// again with that app's last good version, whose sockets never closed
// meanwhile. The manager only ever sees apps the proxy can serve. apply is
// called from one goroutine at a time (appsdir.Config.Apply).
func (d *daemon) apply(specs []*appfile.Spec) []appsdir.AppError {
	table := routeTable(specs)
	failed := d.srv.Apply(mergeTables(d.table, table))
	if len(failed) > 0 && respelled(failed, d.table, table) {
		// localhost:80 replacing 127.0.0.1:80 can only bind once the
		// old spelling is closed.
		failed = d.srv.Apply(table)
	}
	if len(failed) > 0 {
		return bindErrors(specs, failed)
	}
	d.mgr.Apply(specs)
	d.srv.Apply(table) // closes the addresses no app wants any more
	d.table = table
	return nil
}

// bindErrors names the file and field of every address that failed.
func bindErrors(specs []*appfile.Spec, failed map[string]error) []appsdir.AppError {
	var errs []appsdir.AppError
	for _, s := range specs {
		for i, addr := range s.Listen {
			if err, ok := failed[addr]; ok {
				errs = append(errs, appsdir.AppError{App: s.Name,
					Err: &appfile.FieldError{File: s.File, Field: fmt.Sprintf("listen[%d]", i), Msg: err.Error()}})
				break
			}
		}
	}
	return errs
}

// mergeTables returns next plus the addresses of prev that next drops.
func mergeTables(prev, next map[string][]l4.Route) map[string][]l4.Route {
	merged := maps.Clone(next)
	for addr, routes := range prev {
		if _, ok := merged[addr]; !ok {
			merged[addr] = routes
		}
	}
	return merged
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

// routeTable maps every listen address to the routes of the apps on it.
func routeTable(specs []*appfile.Spec) map[string][]l4.Route {
	table := make(map[string][]l4.Route)
	for _, s := range specs {
		for _, addr := range s.Listen {
			table[addr] = append(table[addr], l4.Route{
				App:           s.Name,
				SNI:           s.Match.SNI,
				Host:          s.Match.Host,
				ProxyProtocol: s.ProxyProtocol,
			})
		}
	}
	return table
}

func (d *daemon) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	srvDone := make(chan error, 1)
	go func() { srvDone <- d.srv.Shutdown(ctx) }()
	mgrErr := d.mgr.Shutdown(ctx)
	srvErr := <-srvDone
	drvErr := d.driver.Close()
	for _, err := range []error{mgrErr, srvErr, drvErr} {
		if err != nil {
			return fmt.Errorf("shutting down: %w", err)
		}
	}
	d.log.Info("dynapm stopped")
	return nil
}
