package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
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
