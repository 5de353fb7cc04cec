package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Log tail shown in the daemon's log when a program fails: enough to see
// its last error, bounded so that a chatty program cannot flood the log.
const (
	tailBytes = 2 << 10
	tailLines = 20
)

// startHeader begins the line written to the log before each start.
const startHeader = "--- starting at "

// logPath is where the app's stdout and stderr go.
func (m *Manager) logPath(name string) string {
	return filepath.Join(m.cfg.StateDir, "logs", name+".log")
}

// openLog opens the app's log for appending (creating it and its directory
// private to the daemon's user), or a writer from Config.Logs, and writes a
// header for this start. The wait function it returns blocks until what
// was written is in the file. A tap (ready.log) needs Config.Logs to be a
// LogTapper.
func (m *Manager) openLog(name string, now time.Time, tap func([]byte) bool) (*os.File, func(context.Context) error, error) {
	if tap != nil {
		lt, ok := m.cfg.Logs.(LogTapper)
		if !ok {
			return nil, nil, errors.New("ready.log: the program's output does not pass through the daemon (no app logs that can be tapped)")
		}
		w, wait, err := lt.OpenTapped(name, tap)
		if err != nil {
			return nil, nil, err
		}
		return writeHeader(w, wait, now)
	}
	w, wait, err := m.openOutput(name)
	if err != nil {
		return nil, nil, err
	}
	return writeHeader(w, wait, now)
}

// openOutput opens a writer into the app's log for a program's output,
// without a header: Config.Logs's, or the file opened directly for
// appending (created with its directory private to the daemon's user,
// never through a symlink). Hooks write there too.
func (m *Manager) openOutput(name string) (*os.File, func(context.Context) error, error) {
	if m.cfg.Logs != nil {
		return m.cfg.Logs.Open(name)
	}
	path := m.logPath(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening log: %w", err)
	}
	return f, func(context.Context) error { return nil }, nil
}

// writeHeader writes the start's header to w, a writer from Config.Logs.
func writeHeader(w *os.File, wait func(context.Context) error, now time.Time) (*os.File, func(context.Context) error, error) {
	if _, err := fmt.Fprintf(w, "%s%s ---\n", startHeader, now.Format(time.RFC3339Nano)); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("writing log: %w", err)
	}
	return w, wait, nil
}

// logTail returns the last lines of the app's log (at most tailLines lines
// and tailBytes bytes), or "" when it cannot be read.
func (m *Manager) logTail(name string) string {
	// Never through a symlink: the tail goes to the daemon's log.
	f, err := os.OpenFile(m.logPath(name), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-tailBytes, 0)
	buf := make([]byte, st.Size()-off)
	n, err := f.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return ""
	}
	buf = bytes.TrimRight(buf[:n], "\n")
	// Only this start's output: from after the last start header on.
	if i := bytes.LastIndex(buf, []byte(startHeader)); i >= 0 {
		buf = buf[i:]
		if j := bytes.IndexByte(buf, '\n'); j >= 0 {
			buf = buf[j+1:]
		} else {
			buf = nil
		}
	} else if off > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	lines := bytes.Split(buf, []byte("\n"))
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
