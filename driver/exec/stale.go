package execdriver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The reaper kills an app's process group when the daemon dies, but it can
// die too (the OOM killer, a careless kill -9 of everything). Then the apps
// outlive the daemon and the next daemon finds their upstream ports taken.
// As a second line of defence the driver records every live group in a
// file under the state directory, and a starting daemon stops the groups
// that are still there (StopStale).

// groupRecord is one live process group, as written to RUNDIR/PGID.json.
type groupRecord struct {
	App  string `json:"app"`
	Pgid int    `json:"pgid"`
	// Program is the path that was run, for the log.
	Program string `json:"program"`
	// StartTicks is the leader's start time (/proc/PID/stat field 22) and
	// BootID the kernel's boot id: together they tell our leader from a
	// process that reuses its pid later.
	StartTicks  uint64        `json:"start_ticks"`
	BootID      string        `json:"boot_id"`
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

// writeRecordLocked records p's group. Best effort: a failure only costs
// the second line of defence, so it is logged, not returned. d.mu must be
// held, which orders it before the group's removeRecordLocked.
func (d *Driver) writeRecordLocked(p *process, app, program string, sig syscall.Signal, timeout time.Duration) {
	if err := d.writeGroupRecordLocked(p.pid, app, program, sig, timeout); err != nil {
		p.logger.Warn("cannot record process group", "err", err)
	}
}

// writeGroupRecordLocked writes the record of group pgid, whose leader
// must still be alive (not a zombie). d.mu must be held.
func (d *Driver) writeGroupRecordLocked(pgid int, app, program string, sig syscall.Signal, timeout time.Duration) error {
	dir := d.runDir
	if dir == "" {
		return nil
	}
	ticks, err := startTicks(pgid)
	if err != nil {
		return err
	}
	rec := groupRecord{App: app, Pgid: pgid, Program: program, StartTicks: ticks, BootID: bootID(),
		StopSignal: int(sig), StopTimeout: timeout}
	b, _ := json.Marshal(rec)
	path := recordPath(dir, pgid)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removeRecordLocked forgets the record of group pgid. d.mu must be held.
func (d *Driver) removeRecordLocked(pgid int) {
	dir := d.runDir
	if dir == "" {
		return
	}
	if err := os.Remove(recordPath(dir, pgid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.logger.Warn("removing process group record", "pgid", pgid, "err", err)
	}
}

func recordPath(dir string, pgid int) string {
	return filepath.Join(dir, strconv.Itoa(pgid)+".json")
}

// StopStale stops every process group recorded in dir that still runs: the
// apps of a previous daemon that died without its reaper. Each is sent its
// stop signal, then SIGKILL after its stop timeout (bounded by ctx); the
// records are removed. It returns how many groups it stopped. A record
// whose leader's pid now belongs to another process is dropped untouched.
// Call it before starting any app, with the state directory locked.
func StopStale(ctx context.Context, dir string, log *slog.Logger) int {
	if log == nil {
		log = slog.Default()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("cannot look for apps left by a previous daemon", "dir", dir, "err", err)
		}
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
		rec, ok := readRecord(path)
		_ = os.Remove(path)
		if !ok || !rec.stillOurs() {
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

func readRecord(path string) (groupRecord, bool) {
	var rec groupRecord
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.Pgid <= 1 {
		return rec, false
	}
	return rec, true
}

// stillOurs reports whether the recorded group still exists and is the one
// recorded. While any member of a group lives, no new process can get its
// id as pid, so a group with a live member but no live leader is what is
// left of ours; a live leader must have the recorded start time.
func (rec groupRecord) stillOurs() bool {
	if rec.BootID != bootID() || !groupAlive(rec.Pgid) {
		return false
	}
	ticks, err := startTicks(rec.Pgid)
	if err != nil {
		return true // the leader is gone; its group lives on
	}
	return ticks == rec.StartTicks
}

// stopStaleGroup signals the group, waits up to its stop timeout, then
// kills it and waits for it to go (bounded by killGrace).
func stopStaleGroup(ctx context.Context, rec groupRecord, log *slog.Logger) {
	sig := syscall.Signal(rec.StopSignal)
	if sig <= 0 {
		sig = syscall.SIGTERM
	}
	_ = syscall.Kill(-rec.Pgid, sig)
	if waitGroupGoneFor(ctx, rec.Pgid, rec.StopTimeout) {
		log.Info("stale app stopped", "app", rec.App, "pgid", rec.Pgid)
		return
	}
	_ = syscall.Kill(-rec.Pgid, syscall.SIGKILL)
	if waitGroupGoneFor(context.Background(), rec.Pgid, killGrace) {
		log.Info("stale app killed after its stop timeout", "app", rec.App, "pgid", rec.Pgid)
		return
	}
	log.Error("stale process group survives SIGKILL", "app", rec.App, "pgid", rec.Pgid)
}

// waitGroupGoneFor polls until group pgid has no live member (true), or
// timeout passes or ctx ends (false).
func waitGroupGoneFor(ctx context.Context, pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	interval := groupPollMin
	for groupAlive(pgid) {
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
