package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	drivers map[string]lifecycle.Driver // the others, by driver: name
	mgr     *lifecycle.Manager
	srv     *l4.Server
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
	d.drivers = otherDrivers(log)
	d.mgr = lifecycle.NewManager(lifecycle.Config{
		StateDir: s.StateDir,
		Logger:   log,
		Driver:   d.driver,
		Drivers:  d.drivers,
	})
	d.srv = &l4.Server{Waker: d.mgr, Logger: log}

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

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
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

// apply makes the proxy and the manager serve exactly specs. Listeners come
// first: an app whose new address cannot be bound is reported back, and the
// watcher calls apply again with that app's last good version, so that the
// manager only ever sees apps the proxy can serve.
func (d *daemon) apply(specs []*appfile.Spec) []appsdir.AppError {
	failed := d.srv.Apply(routeTable(specs))
	if len(failed) == 0 {
		d.mgr.Apply(specs)
		return nil
	}
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
	drvErr := errors.Join(d.driver.Close(), closeDrivers(d.drivers))
	for _, err := range []error{mgrErr, srvErr, drvErr} {
		if err != nil {
			return fmt.Errorf("shutting down: %w", err)
		}
	}
	d.log.Info("dynapm stopped")
	return nil
}
