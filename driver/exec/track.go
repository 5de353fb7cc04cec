package execdriver

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"

	"github.com/dynapm/dynapm/appfile"
)

// trackedStopTimeout is how long a later daemon gives a tracked group
// (a scheduled job) between SIGTERM and SIGKILL when it finds it left over.
const trackedStopTimeout = killGrace

// StartGroup starts cmd, which must ask for a process group of its own
// (SysProcAttr.Setpgid), as spec's app's program would run (its user,
// group, limits and umask), and puts that group under the same guard as the
// driver's own groups: the reaper kills it if the daemon dies, and with
// RecordGroups a later daemon stops it if the reaper died too. The
// scheduler runs its jobs through it. The app's name names the group in
// the record and the log; program is what was run. The reaper is made
// ready before cmd starts and the group is registered under the same lock
// right after, so that a daemon killed at any moment leaves no unguarded
// group.
// The caller must call untrack (exactly once) when the group has no live
// member left, so that a reused pgid is never killed; untrack kills what
// the command left outside its group (in its cgroup, or orphans with its
// invocation id) and waits for it. With cgroups, cmd must not ask for a
// cgroup of its own. After Close, StartGroup fails without starting
// anything.
func (d *Driver) StartGroup(cmd *exec.Cmd, spec *appfile.Spec, program string) (untrack func(), err error) {
	app := spec.Name
	if cmd.SysProcAttr == nil || !cmd.SysProcAttr.Setpgid {
		return nil, fmt.Errorf("starting a process group for app %q: the command does not ask for a group of its own", app)
	}
	// A job runs as its app's program does: same user and group, same
	// limits and umask.
	if err := applyGuards(cmd, spec); err != nil {
		return nil, fmt.Errorf("starting a process group for app %q: %w", app, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("starting a process group for app %q: driver closed", app)
	}
	log := d.logger.With("app", app)
	if err := d.ensureReaperLocked(); err != nil {
		// watchReaper or the next start retries; the stale record below
		// still guards the group.
		log.Warn("cannot start the reaper for a process group", "err", err)
	}
	b, err := d.newBoxLocked(cmd, app, 'j', 0)
	if err != nil {
		return nil, fmt.Errorf("starting a process group for app %q: %w", app, err)
	}
	d.recordLocked(b, app, program, syscall.SIGTERM, trackedStopTimeout)
	if err := cmd.Start(); err != nil {
		d.removeRecordLocked(b)
		_ = b.release()
		return nil, err
	}
	pgid := cmd.Process.Pid
	b.pgid = pgid
	job := &trackedJob{app: app, box: b}
	d.tracked[pgid] = job
	if d.reaper != nil {
		if err := d.reaper.send('+', b.reaperKey()); err != nil {
			log.Warn("registering process group with reaper", "pgid", pgid, "err", err)
		}
	}
	d.recordLocked(b, app, program, syscall.SIGTERM, trackedStopTimeout)
	return func() { d.untrack(pgid, job) }, nil
}

// trackedJob is a group started by StartGroup.
type trackedJob struct {
	app string
	box *box
}

// untrack kills what is left of a group started by StartGroup outside its
// process group, waits for it and forgets the group.
func (d *Driver) untrack(pgid int, job *trackedJob) {
	d.mu.Lock()
	if d.tracked[pgid] != job {
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	b := job.box
	var err error
	if b.group != nil {
		err = b.group.Kill()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), killGrace)
			err = b.waitGone(ctx)
			cancel()
		}
		if err == nil {
			err = b.release()
		}
	} else {
		// Not the process group: its id may be reused by now.
		err = killMarked(b.id, pgid)
	}
	log := d.logger.With("app", job.app)
	if err != nil {
		log.Warn("killing what a job left behind", "pgid", pgid, "err", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.tracked, pgid)
	d.removeRecordLocked(b)
	if d.reaper == nil {
		return
	}
	if err := d.reaper.send('-', b.reaperKey()); err != nil {
		log.Debug("unregistering process group with reaper", "pgid", pgid, "err", err)
	}
}
