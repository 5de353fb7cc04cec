// Package applog writes the apps' stdout and stderr to STATE/logs/NAME.log
// with size-based rotation (lumberjack), while still handing each program a
// plain *os.File: the program writes into a pipe and a goroutine in the
// daemon copies the pipe into the rotating file. The program never learns
// about rotation, and a grandchild that keeps the pipe open delays nothing
// but the end of that copy.
package applog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/dynapm/dynapm/internal/trust"
)

// Defaults for Config's zero fields.
const (
	DefaultMaxBytes   = 10 << 20
	DefaultMaxBackups = 3
)

// Config says where app logs go and how they rotate.
type Config struct {
	// Dir holds NAME.log and its rotated predecessors (NAME-TIME.log).
	Dir string
	// MaxBytes is the size past which the log is rotated; lumberjack counts
	// in MiB, so it is rounded up to whole MiB. DefaultMaxBytes when zero.
	MaxBytes int64
	// MaxBackups is how many rotated files are kept; DefaultMaxBackups
	// when zero, none when negative.
	MaxBackups int
	// MaxAgeDays removes rotated files older than this; 0 keeps them
	// regardless of age.
	MaxAgeDays int
	// Compress gzips rotated files.
	Compress bool
	Logger   *slog.Logger
}

// Logs owns every app's rotating log file and the goroutines that fill them.
type Logs struct {
	cfg Config

	mu      sync.Mutex
	closed  bool
	files   map[string]*lumberjack.Logger
	readers map[*os.File]struct{} // read ends being copied
	dirMade bool                  // cfg.Dir exists and was checked (once)
	wg      sync.WaitGroup
}

// New returns the app logs kept in cfg.Dir.
func New(cfg Config) *Logs {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	switch {
	case cfg.MaxBackups == 0:
		cfg.MaxBackups = DefaultMaxBackups
	case cfg.MaxBackups < 0:
		cfg.MaxBackups = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Logs{cfg: cfg, files: map[string]*lumberjack.Logger{}, readers: map[*os.File]struct{}{}}
}

// Path is the current log file of app.
func (l *Logs) Path(app string) string {
	return filepath.Join(l.cfg.Dir, app+".log")
}

// Open returns a new writer for app's log: the write end of a pipe, to be
// given to the program as stdout and stderr. The caller must close its own
// copy once the program has started (the program holds its own), otherwise
// the copy into the log never ends. wait blocks until every holder of the
// write end has closed it and all it wrote is in the log file, or until
// ctx ends; call it after the program exits and before reading its last
// lines.
func (l *Logs) Open(app string) (w *os.File, wait func(context.Context) error, err error) {
	return l.OpenTapped(app, nil)
}

// OpenTapped is Open with a tap on the output: tap sees each piece of it
// as it passes into the log, in order, until it returns false (a start
// waiting for a line, ready: {log: ...}). It runs on the goroutine that
// drains the pipe, so it must be quick: a slow tap stalls the program on
// a full pipe.
func (l *Logs) OpenTapped(app string, tap func(p []byte) bool) (w *os.File, wait func(context.Context) error, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, errors.New("opening app log: app logs are closed")
	}
	if !l.dirMade {
		if err := l.prepareLocked(); err != nil {
			return nil, nil, err
		}
	}
	l.clearPlanted(l.Path(app), "app", app)
	r, w, err := logPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("opening app log pipe: %w", err)
	}
	lj := l.files[app]
	if lj == nil {
		// One lumberjack.Logger per app for the daemon's lifetime: each
		// starts a goroutine on first write that it never ends, so a
		// logger per start would leak one per start.
		lj = &lumberjack.Logger{
			Filename:   l.Path(app),
			MaxSize:    int((l.cfg.MaxBytes + 1<<20 - 1) >> 20),
			MaxBackups: l.cfg.MaxBackups,
			MaxAge:     l.cfg.MaxAgeDays,
			Compress:   l.cfg.Compress,
			LocalTime:  true,
		}
		l.files[app] = lj
	}
	l.readers[r] = struct{}{}
	done := make(chan struct{})
	l.wg.Add(1)
	go l.copyLog(app, r, lj, tap, done)
	wait = func(ctx context.Context) error {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("waiting for the log of app %q: %w", app, ctx.Err())
		}
	}
	return w, wait, nil
}

// Prepare makes the log directory (mode 0700), checks that only the
// daemon's user (and root) can write it, and removes from it what the
// daemon did not write; Open does it first when it was not done. Call it
// at start, with the state directory locked, to refuse a log directory
// that cannot be trusted before any app starts.
func (l *Logs) Prepare() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dirMade {
		return nil
	}
	return l.prepareLocked()
}

// prepareLocked is Prepare with l.mu held. Lumberjack opens, creates,
// truncates and chowns its files by name and follows symlinks, when it
// rotates and compresses too: it is safe only in a directory where no one
// else can plant anything. So the directory must be the daemon's own (a
// directory, not a symlink to one; internal/trust for it and those above
// it), and what was planted before it was (a symlink, a hard link, a
// named pipe, another user's file) goes.
func (l *Logs) prepareLocked() error {
	dir := l.cfg.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating log directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("checking log directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("log directory %s is %s, not a directory; remove it", dir, describe(fi))
	}
	if err := trust.New().Dir(dir, "log directory"); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading log directory: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			l.clearPlanted(filepath.Join(dir, e.Name()))
		}
	}
	l.dirMade = true
	return nil
}

// clearPlanted removes path unless it is a regular file the daemon's user
// owns with no other name, logging why (with attrs): anything else is
// not what the daemon wrote, and lumberjack would write through it.
// Removing a name leaves what it points to, or its other names, alone.
func (l *Logs) clearPlanted(path string, attrs ...any) {
	fi, err := os.Lstat(path)
	if err != nil {
		return // not there: lumberjack creates it
	}
	what := describe(fi)
	if what == "" {
		return
	}
	if target, err := os.Readlink(path); err == nil {
		what += " to " + target
	}
	attrs = append(attrs, "file", path, "found", what)
	if err := os.Remove(path); err != nil {
		l.cfg.Logger.Error("cannot remove a file the daemon did not write from the log directory; the app's output may not be logged", append(attrs, "err", err)...)
		return
	}
	l.cfg.Logger.Warn("removed a file the daemon did not write from the log directory; the app's output goes to a new file", attrs...)
}

// describe says what fi is when it is not a regular file of the daemon's
// user with one name: a symlink (and its target), another user's file...;
// "" for one.
func describe(fi os.FileInfo) string {
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return "a symlink"
	case fi.IsDir():
		return "a directory"
	case fi.Mode()&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case !fi.Mode().IsRegular():
		return "a special file (" + fi.Mode().Type().String() + ")"
	case st == nil:
		return ""
	case st.Uid != uint32(os.Geteuid()):
		return "a file of " + trust.UserName(st.Uid)
	case st.Nlink > 1:
		return fmt.Sprintf("a file with %d hard links", st.Nlink)
	}
	return ""
}

// logPipe returns a pipe for a program's output: a read end on Go's
// netpoller (copyLog's Read, which Close can interrupt) and a blocking
// write end, which only the program uses. os.Pipe would register the write
// end with the netpoller too, only for exec to make it blocking again:
// system calls on every start, on the way from a client's connect to the
// spawn (docs/BENCHMARKS.md, log pipe).
func logPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	if err := syscall.SetNonblock(p[0], true); err != nil {
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	// NewFile puts a non-blocking descriptor on the netpoller.
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}

// copyLog copies one program's output into its log, and shows it to tap
// when there is one, until every writer is gone (or Close closes the read
// end). It keeps reading after a write error, so that a full disk never
// blocks the program on a full pipe.
func (l *Logs) copyLog(app string, r *os.File, lj *lumberjack.Logger, tap func([]byte) bool, done chan<- struct{}) {
	defer l.wg.Done()
	defer close(done)
	defer func() {
		l.mu.Lock()
		delete(l.readers, r)
		l.mu.Unlock()
		r.Close()
	}()
	buf := make([]byte, 32<<10)
	reported := false
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := lj.Write(buf[:n]); werr != nil && !reported {
				l.cfg.Logger.Error("writing app log; output is dropped until it works again", "app", app, "err", werr)
				reported = true
			} else if werr == nil {
				reported = false
			}
			if tap != nil && !tap(buf[:n]) {
				tap = nil
			}
		}
		if err != nil {
			return // io.EOF: every writer is gone; or Close
		}
	}
}

// Close waits until ctx ends for the copies to finish by themselves (the
// programs are normally stopped by then), then ends the rest by closing the
// pipes' read ends, which leftovers of a program may still hold open, and
// closes the log files.
func (l *Logs) Close(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	drained := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		l.mu.Lock()
		for r := range l.readers {
			// A Read in progress returns once the descriptor closes.
			r.Close()
		}
		l.mu.Unlock()
		<-drained
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, lj := range l.files {
		errs = append(errs, lj.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing app logs: %w", err)
	}
	return nil
}
