package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/dynapm/dynapm/settings"
)

// runCommand runs the daemon until SIGTERM or SIGINT.
func runCommand(args []string, stderr io.Writer) int {
	s, code, ok := parseSettings("run", args, stderr)
	if !ok {
		return code
	}
	log, err := newLogger(s.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dynapm:", err)
		return 1
	}
	procsForLoop(os.Getenv)
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

// procsForLoop gives the Go scheduler one P more than it would have (the
// CPUs it may use), unless the user chose GOMAXPROCS. l4's event loop keeps
// a goroutine locked to its thread, blocked in epoll_wait whenever no bytes
// move; with as many Ps as CPUs, every such block hands its P to another
// thread and every return takes one back (futex wake-ups, sysmon retakes).
// With one P spare, new connections cost half the context switches
// (1.23 to 0.67 per connection through the benchmark's wrk load, 5 to 10 %
// more connections per second); the number of threads running Go code at
// once stays bounded by the CPUs' worth of work there is.
func procsForLoop(getenv func(string) string) {
	if getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
}
