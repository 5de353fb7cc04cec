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
	s.EventLoops = eventLoops(os.Getenv, s.EventLoops)
	if v := os.Getenv(containmentEnv); v != "" {
		if v != settings.ContainAuto && v != settings.ContainCgroup && v != settings.ContainProcessGroup {
			fmt.Fprintf(stderr, "dynapm: %s=%q: expected %s, %s or %s\n", containmentEnv, v,
				settings.ContainAuto, settings.ContainCgroup, settings.ContainProcessGroup)
			return 2
		}
		s.Containment = v
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runDaemon(ctx, s, log); err != nil {
		log.Error("dynapm stopped with an error", "err", err)
		return 1
	}
	return 0
}

// containmentEnv, when set, overrides the containment setting (tests and
// a quick try of the fallback).
const containmentEnv = "DYNAPM_CONTAINMENT"

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

// autoEventLoops bounds the event loops chosen for event_loops: 0. Past a
// few loops the kernel's accept queue and the apps, not the loops, are
// what a machine of thousands of rarely used apps waits on, and every loop
// is a thread and an epoll registration per listener.
const autoEventLoops = 8

// eventLoops decides how many event loops the daemon runs, one per CPU it
// may use unless the settings say (configured > 0), and gives the Go
// scheduler one P more than it would have, unless the user chose
// GOMAXPROCS. Each loop keeps a goroutine blocked in epoll_wait whenever
// no bytes move; with only as many Ps as CPUs, every such block hands its
// P to another thread and every return takes one back (futex wake-ups,
// sysmon retakes). One spare P halves the context switches per new
// connection, and a spare P per loop does no better, so the threads
// running Go code stay one above the CPUs. A loop per CPU rather than one:
// a single loop thread, saturated, waits to run while the other CPUs are
// left to the clients and the apps (docs/BENCHMARKS.md, event loops).
func eventLoops(getenv func(string) string, configured int) int {
	procs := runtime.GOMAXPROCS(0) // the CPUs (and cgroup quota) Go sees
	n := configured
	if n <= 0 {
		n = min(procs, autoEventLoops)
	}
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(procs + 1)
	}
	return n
}
