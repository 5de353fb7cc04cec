package cron

import (
	"log/slog"
)

// cronLogger passes robfig/cron's log to slog. Its Info messages (every
// wake, every schedule computation) are noise for an operator: they go to
// Debug.
type cronLogger struct {
	log *slog.Logger
}

// Info logs at Debug level.
func (l cronLogger) Info(msg string, keysAndValues ...any) {
	l.log.Debug("cron: "+msg, keysAndValues...)
}

// Error logs at Error level.
func (l cronLogger) Error(err error, msg string, keysAndValues ...any) {
	l.log.Error("cron: "+msg, append([]any{"err", err}, keysAndValues...)...)
}
