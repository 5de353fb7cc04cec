package execdriver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/driver/exec/cgroup"
)

// The reaper kills an app's processes when the daemon dies, but it can die
// too (the OOM killer, a careless kill -9 of everything). Then the apps
// outlive the daemon and the next daemon finds their upstream ports taken.
// As a second line of defence a starting daemon stops what a dead one
// left: with cgroups, every group in its subtree (StopLeftGroups), since
// being in the daemon's subtree is the proof; without them, the process
// groups recorded in a file each under the state directory (StopStale).
//
// A record is never enough to signal a process: whoever could write one
// could name any pid, with the start time and boot id that /proc shows
// everyone. It is acted on only when it is a file the daemon's user wrote
// that nobody else can, and only on processes whose environment holds the
// invocation id it names, a secret 128 bits only the program's own user
// (and root) can read back.

// groupRecord is one live process group, as written to RUNDIR/PGID.json.
type groupRecord struct {
	App  string `json:"app"`
	Pgid int    `json:"pgid"`
	// Program is the path that was run, for the log.
	Program string `json:"program"`
	// StartTicks is the leader's start time (/proc/PID/stat field 22) and
	// BootID the kernel's boot id: together they tell our leader from a
	// process that reuses its pid later.
	StartTicks uint64 `json:"start_ticks"`
	BootID     string `json:"boot_id"`
	// Invocation is the invocation id in the program's environment.
	Invocation  string        `json:"invocation"`
	StopSignal  int           `json:"stop_signal"`
	StopTimeout time.Duration `json:"stop_timeout"`
}

// RecordGroups makes the driver record each group it starts in dir (created
// if missing), and forget the record once the group is gone. Call it before
// the first Start.
func (d *Driver) RecordGroups(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the process record directory: %w", err)
	}
	d.mu.Lock()
	d.runDir = dir
	d.mu.Unlock()
	return nil
}

// recordLocked records box b's program, in RUNDIR/ID.json (ID its
// invocation id): first before it starts (no pgid yet), so that a daemon
// killed at any moment leaves a record of what it started, then with its
// process group and the leader's start time once it runs. Only without
// cgroups. Best effort: a failure only costs the second line of defence,
// so it is logged, not returned. d.mu must be held, which orders it
// before the box's removeRecordLocked.
func (d *Driver) recordLocked(b *box, app, program string, sig syscall.Signal, timeout time.Duration) {
	if d.runDir == "" || b.group != nil {
		return
	}
	if err := writeRecord(d.runDir, b, app, program, sig, timeout); err != nil {
		d.logger.Warn("cannot record a program", "app", app, "pgid", b.pgid, "err", err)
	}
}

func writeRecord(dir string, b *box, app, program string, sig syscall.Signal, timeout time.Duration) error {
	rec := groupRecord{App: app, Pgid: b.pgid, Program: program, BootID: bootID(),
		Invocation: b.id, StopSignal: int(sig), StopTimeout: timeout}
	if b.pgid > 0 {
		ticks, err := startTicks(b.pgid)
		if err != nil {
			return err
		}
		rec.StartTicks = ticks
	}
	data, _ := json.Marshal(rec)
	path := recordPath(dir, b.id)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removeRecordLocked forgets the record of box b. d.mu must be held.
func (d *Driver) removeRecordLocked(b *box) {
	if d.runDir == "" || b.group != nil {
		return
	}
	if err := os.Remove(recordPath(d.runDir, b.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.logger.Warn("removing a program's record", "pgid", b.pgid, "err", err)
	}
}

func recordPath(dir, key string) string {
	return filepath.Join(dir, key+".json")
}

// StopStale stops every process group recorded in dir that still runs: the
// apps of a previous daemon that died without its reaper. Each is sent its
// stop signal, then SIGKILL after its stop timeout (bounded by ctx); the
// records are removed. It returns how many groups it stopped. A record
// another user could have written, or whose processes do not carry its
// invocation id (its pid now belongs to another process, or it was
// forged), is dropped untouched. Call it before starting any app, with
// the state directory locked.
func StopStale(ctx context.Context, dir string, log *slog.Logger) int {
	if log == nil {
		log = slog.Default()
	}
	if err := ownDir(dir); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("not looking for apps left by a previous daemon", "dir", dir, "err", err)
		}
		return 0
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("cannot look for apps left by a previous daemon", "dir", dir, "err", err)
		return 0
	}
	var wg sync.WaitGroup
	stopped := 0
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if !strings.HasSuffix(e.Name(), ".json") {
			_ = os.Remove(path) // a temporary file cut short
			continue
		}
		rec, err := readRecord(path)
		_ = os.Remove(path)
		if err != nil {
			log.Warn("ignoring a process record", "file", path, "err", err)
			continue
		}
		if !rec.stillOurs() {
			continue
		}
		stopped++
		log.Warn(fmt.Sprintf("found app %q still running from a previous daemon (pgid %d); stopping it", rec.App, rec.Pgid),
			"app", rec.App, "pgid", rec.Pgid, "program", rec.Program)
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopStaleGroup(ctx, rec, log)
		}()
	}
	wg.Wait()
	return stopped
}

// maxRecord bounds a record file.
const maxRecord = 64 << 10

// readRecord reads a record the daemon's user wrote: a regular file, not
// a symlink, owned by that user and readable or writable by nobody else.
func readRecord(path string) (groupRecord, error) {
	var rec groupRecord
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return rec, err
	}
	defer f.Close()
	if err := ownFile(f); err != nil {
		return rec, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxRecord))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("not a process record: %w", err)
	}
	if rec.Pgid < 0 || rec.Pgid == 1 || len(rec.Invocation) != 32 {
		return rec, errors.New("not a process record: no invocation id, or a bad process group")
	}
	return rec, nil
}

// ownFile refuses a file that is not a regular file of the daemon's user
// alone.
func ownFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || !ok {
		return errors.New("not a regular file")
	}
	if int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("owned by uid %d with mode %#o: only a file of uid %d with mode 0600 is trusted", st.Uid, fi.Mode().Perm(), os.Geteuid())
	}
	return nil
}

// ownDir refuses a directory that is a symlink, another user's, or open
// to group or others.
func ownDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok {
		return errors.New("not a directory")
	}
	if int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("owned by uid %d with mode %#o: only a directory of uid %d with mode 0700 is trusted", st.Uid, fi.Mode().Perm(), os.Geteuid())
	}
	return nil
}

// stillOurs reports whether the recorded program still runs: the same
// boot, and processes that carry the recorded invocation id. Only those,
// and the recorded group when its leader still proves it ours, are
// signalled.
func (rec groupRecord) stillOurs() bool {
	return rec.BootID == bootID() && len(rec.marked()) > 0
}

// marked returns the live processes that carry the record's invocation
// id, wherever they are: those the dead daemon was the subreaper of have
// been reparented.
func (rec groupRecord) marked() []int { return findMarked(rec.Invocation, 0, 0) }

// signal sends sig to the recorded group, if its leader still proves it
// ours, and to every process that carries the invocation id.
func (rec groupRecord) signal(sig syscall.Signal) {
	// Pgid 0: recorded before it started; its processes carry the id.
	if rec.Pgid > 0 {
		if ticks, err := startTicks(rec.Pgid); err == nil && ticks == rec.StartTicks && hasInvocation(rec.Pgid, rec.Invocation) {
			_ = syscall.Kill(-rec.Pgid, sig)
		}
	}
	signalMarked(rec.marked(), rec.Invocation, sig)
}

// stopStaleGroup signals the program, waits up to its stop timeout, then
// kills it and waits for it to go (bounded by killGrace).
func stopStaleGroup(ctx context.Context, rec groupRecord, log *slog.Logger) {
	sig := syscall.Signal(rec.StopSignal)
	if sig <= 0 {
		sig = syscall.SIGTERM
	}
	rec.signal(sig)
	if waitRecordGoneFor(ctx, rec, rec.StopTimeout) {
		log.Info("stale app stopped", "app", rec.App, "pgid", rec.Pgid)
		return
	}
	rec.signal(syscall.SIGKILL)
	if waitRecordGoneFor(context.Background(), rec, killGrace) {
		log.Info("stale app killed after its stop timeout", "app", rec.App, "pgid", rec.Pgid)
		return
	}
	log.Error("stale process group survives SIGKILL", "app", rec.App, "pgid", rec.Pgid)
}

// waitRecordGoneFor polls until no process carries the record's
// invocation id (true), or timeout passes or ctx ends (false).
func waitRecordGoneFor(ctx context.Context, rec groupRecord, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	interval := groupPollMin
	for len(rec.marked()) > 0 {
		if !time.Now().Before(deadline) {
			return false
		}
		t := time.NewTimer(min(interval, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		interval = min(interval*2, groupPollMax)
	}
	return true
}

// startTicks returns the start time of process pid, in clock ticks since
// boot, from /proc/PID/stat; an error when it is gone or a zombie.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	// After "pid (comm)": state is field 3, starttime field 22.
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	if f[0][0] == 'Z' || f[0][0] == 'X' {
		return 0, fmt.Errorf("process %d is a zombie", pid)
	}
	return strconv.ParseUint(string(f[19]), 10, 64)
}

// bootID identifies the running kernel boot; empty when unknown.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// StopLeftGroups stops every group in the driver's cgroup subtree: at
// start, before any app runs, what a dead daemon left. Being in the
// subtree, which only the daemon's user can write, is the proof they are
// DynaPM's. Each gets SIGTERM, then cgroup.kill after leftTimeout (bounded
// by ctx), and is removed. It returns how many groups held processes.
func (d *Driver) StopLeftGroups(ctx context.Context) int {
	d.mu.Lock()
	sub, timeout := d.sub, d.leftTimeout
	d.mu.Unlock()
	if sub == nil {
		return 0
	}
	names, err := sub.List()
	if err != nil {
		d.logger.Warn("cannot look for apps left by a previous daemon", "err", err)
		return 0
	}
	var wg sync.WaitGroup
	stopped := 0
	for _, name := range names {
		g, err := sub.Open(name)
		if err != nil {
			d.logger.Warn("cannot open a cgroup left by a previous daemon", "err", err)
			continue
		}
		app := appOfGroup(name)
		if pop, err := g.Populated(); err == nil && pop {
			stopped++
			d.logger.Warn(fmt.Sprintf("found app %q still running from a previous daemon (cgroup %s); stopping it", app, g.Path()), "app", app)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := stopLeftGroup(ctx, g, timeout); err != nil {
				d.logger.Error("cannot stop a cgroup left by a previous daemon", "app", app, "err", err)
				g.Close()
			}
		}()
	}
	wg.Wait()
	return stopped
}

// stopLeftGroup stops and removes one group a dead daemon left.
func stopLeftGroup(ctx context.Context, g *cgroup.Group, timeout time.Duration) error {
	if err := g.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	termCtx, cancel := context.WithTimeout(ctx, timeout)
	err := g.WaitEmpty(termCtx)
	cancel()
	if err != nil {
		killCtx, cancel := context.WithTimeout(context.Background(), killGrace)
		defer cancel()
		if err := g.Destroy(killCtx); err != nil {
			return err
		}
		return nil
	}
	return g.Remove()
}
