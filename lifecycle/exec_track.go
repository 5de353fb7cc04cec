package lifecycle

import (
	"syscall"
)

// trackedStopTimeout is how long a later daemon gives a tracked group
// (a scheduled job) between SIGTERM and SIGKILL when it finds it left over.
const trackedStopTimeout = killGrace

// TrackGroup puts process group pgid, started by someone else (the
// scheduler runs jobs in groups of their own), under the same guard as the
// driver's own groups: the reaper kills it if the daemon dies, and with
// RecordGroups a later daemon stops it if the reaper died too. app names
// the group in the record and the log; program is what was run. The
// caller must call untrack (exactly once) when the group has no live
// member left, so that a reused pgid is never killed. A group whose leader
// already exited is guarded by the reaper but not recorded. After Close,
// TrackGroup does nothing.
func (d *ExecDriver) TrackGroup(pgid int, app, program string) (untrack func()) {
	if pgid <= 1 {
		return func() {}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return func() {}
	}
	log := d.logger.With("app", app, "pgid", pgid)
	if err := d.ensureReaperLocked(); err != nil {
		// watchReaper or the next start retries; the stale record below
		// still guards the group.
		log.Warn("cannot start the reaper for a process group", "err", err)
	}
	d.tracked[pgid] = app
	if d.reaper != nil {
		if err := d.reaper.send('+', pgid); err != nil {
			log.Warn("registering process group with reaper", "err", err)
		}
	}
	if err := d.writeGroupRecordLocked(pgid, app, program, syscall.SIGTERM, trackedStopTimeout); err != nil {
		log.Debug("cannot record process group", "err", err)
	}
	return func() { d.untrack(pgid) }
}

// untrack forgets a group given to TrackGroup.
func (d *ExecDriver) untrack(pgid int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.tracked[pgid]; !ok {
		return
	}
	delete(d.tracked, pgid)
	d.removeRecordLocked(pgid)
	if d.reaper == nil {
		return
	}
	if err := d.reaper.send('-', pgid); err != nil {
		d.logger.Debug("unregistering process group with reaper", "pgid", pgid, "err", err)
	}
}
