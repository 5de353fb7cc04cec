package execdriver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/driver/exec/cgroup"
)

// The containments a driver runs its programs in, as the daemon's ready
// line and README name them.
const (
	ContainCgroup       = "cgroup"
	ContainProcessGroup = "process-group"
)

// InvocationEnv is the variable that carries a program's invocation id
// (as systemd's INVOCATION_ID): 128 random bits, new for every instance
// and job, inherited by everything the program starts. Without cgroups it
// is how the driver tells an app's orphans from any other process, and
// how a later daemon tells a recorded group from a forged record.
const InvocationEnv = "DYNAPM_INVOCATION_ID"

// UseCgroups makes the driver run every program, instance or job, in a
// cgroup of its own under sub (see package cgroup). Call it before the
// first start; the driver does not close sub.
func (d *Driver) UseCgroups(sub *cgroup.Subtree) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sub = sub
}

// Containment names how the driver holds a program and all it starts:
// ContainCgroup or ContainProcessGroup.
func (d *Driver) Containment() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sub != nil {
		return ContainCgroup
	}
	return ContainProcessGroup
}

// box holds one program and what it starts: its cgroup, or (without
// cgroups) its process group and the processes below the daemon that carry
// its invocation id, which is what comes back of a process that left the
// group once the daemon is their subreaper (UseSubreaper).
type box struct {
	group *cgroup.Group // nil: process-group containment
	// memory: the group has the memory controller (memory.current,
	// memory.events).
	memory bool
	pgid   int    // the leader's pid, once started
	id     string // the invocation id
	// spareSeq orders the spares (Driver.spares) by when they were made.
	spareSeq uint64
}

// newBoxLocked makes the box for a program of app, kind 'i' (instance) or
// 'j' (job), and prepares cmd to start in it: born inside its cgroup,
// with its invocation id in the environment. memMax, when not 0 and the
// groups have the memory controller, becomes the cgroup's memory.max.
// An instance takes the box made ahead for its app (makeSpare) when there
// is one. On an error the box is nil, or, when it was made ahead, one
// that only carries its spareSeq. d.mu must be held.
func (d *Driver) newBoxLocked(cmd *exec.Cmd, app string, kind byte, memMax int64) (*box, error) {
	b := d.spares[app]
	if kind == 'i' && b != nil {
		// One still being made (no group yet) is dropped: makeSpare
		// removes its group.
		delete(d.spares, app)
	}
	if kind != 'i' || b == nil || b.group == nil {
		b = &box{id: newInvocationID()}
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ() // what a nil Env would have given
	}
	cmd.Env = append(cmd.Env, InvocationEnv+"="+b.id)
	if d.sub == nil {
		return b, nil
	}
	if b.group == nil {
		g, err := d.sub.Create(groupName(app, kind, b.id))
		if err != nil {
			return nil, fmt.Errorf("making the program's cgroup: %w", err)
		}
		b.group = g
		b.memory = d.sub.Memory() == nil
	}
	g := b.group
	if b.memory && memMax > 0 {
		if err := g.SetMemoryMax(uint64(memMax)); err != nil {
			if g.Remove() != nil {
				_ = g.Close()
			}
			// A box made ahead is returned for its spareSeq: the caller
			// tries a new one.
			return &box{spareSeq: b.spareSeq}, fmt.Errorf("setting memory_max: %w", err)
		}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = g.FD()
	return b, nil
}

// maxSpares bounds the cgroups made ahead of a start (makeSpare): one per
// app that ran and stopped, for so many apps at most; the oldest makes
// way for a new one.
const maxSpares = 64

// reserveSpare, called as app's program is gone and before its Process
// says so, holds app's place among the spares with a box that has no
// group yet, for makeSpare to make; nil when none is to be made. Held
// before Done: the Manager's ForgetApp, which follows Done, then finds
// it. The spare it evicted to make room, if any, is for makeSpare to
// remove.
func (d *Driver) reserveSpare(app string) (b, evicted *box) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sub == nil || d.closed || d.noSpares || d.spares[app] != nil {
		return nil, nil
	}
	if len(d.spares) >= maxSpares {
		oldest := ""
		for name, s := range d.spares {
			if oldest == "" || s.spareSeq < d.spares[oldest].spareSeq {
				oldest = name
			}
		}
		evicted = d.spares[oldest]
		delete(d.spares, oldest)
	}
	if d.spares == nil {
		d.spares = make(map[string]*box)
	}
	d.spareSeq++
	b = &box{id: newInvocationID(), spareSeq: d.spareSeq}
	d.spares[app] = b
	return b, evicted
}

// makeSpare makes, for the next start of app's instance, the cgroup it
// will be born in, in b from reserveSpare, once the last one is gone: a
// cgroup's mkdir and open are on the path of every cold start otherwise.
// A spare holds nothing and is registered nowhere: the next daemon
// removes it with what a dead one left (StopLeftGroups), and Close or
// ForgetApp removes it. evicted is removed first.
func (d *Driver) makeSpare(app string, b, evicted *box) {
	if evicted != nil {
		if err := evicted.release(); err != nil {
			d.logger.Debug("removing a cgroup made ahead of a start", "err", err)
		}
	}
	if b == nil {
		return
	}
	d.mu.Lock()
	sub := d.sub
	d.mu.Unlock()
	g, err := sub.Create(groupName(app, 'i', b.id))
	if err != nil {
		d.logger.Debug("cannot make a cgroup ahead of the next start", "app", app, "err", err)
		d.mu.Lock()
		if d.spares[app] == b {
			delete(d.spares, app)
		}
		d.mu.Unlock()
		return
	}
	memory := sub.Memory() == nil
	d.mu.Lock()
	if d.closed || d.sub != sub || d.spares[app] != b {
		// Closed, forgotten, evicted or started meanwhile.
		if d.spares[app] == b {
			delete(d.spares, app)
		}
		d.mu.Unlock()
		_ = g.Remove()
		return
	}
	b.group, b.memory = g, memory
	d.mu.Unlock()
}

// ForgetApp drops the cgroup made ahead for app's next start, if any:
// the app left the configuration (lifecycle.AppForgetter).
func (d *Driver) ForgetApp(app string) {
	d.mu.Lock()
	b := d.spares[app]
	delete(d.spares, app)
	d.mu.Unlock()
	if b != nil {
		if err := b.release(); err != nil {
			d.logger.Warn("removing a cgroup made ahead of a start", "app", app, "err", err)
		}
	}
}

// StopSpares makes no more cgroups ahead of a start: the daemon is
// shutting down, and every app it stops would otherwise make one only
// for Close to remove it.
func (d *Driver) StopSpares() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.noSpares = true
}

// groupName is APP@KIND+the id's first 12 hex digits: unique, and its app
// is in the name for a later daemon's log.
func groupName(app string, kind byte, id string) string {
	if len(app) > 200 {
		app = app[:200]
	}
	return app + "@" + string(kind) + id[:12]
}

// appOfGroup is the app a group name names.
func appOfGroup(name string) string {
	for i := range len(name) {
		if name[i] == '@' {
			return name[:i]
		}
	}
	return name
}

func newInvocationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}

// reaperKey is how the reaper knows the box: its cgroup's name, or its
// process group's id.
func (b *box) reaperKey() string {
	if b.group != nil {
		return b.group.Name()
	}
	return strconv.Itoa(b.pgid)
}

// alive reports whether anything of the box is left (zombies aside).
func (b *box) alive() bool {
	if b.group != nil {
		pop, err := b.group.Populated()
		return err != nil || pop
	}
	return groupAlive(b.pgid) || len(markedProcs(b.id)) > 0
}

// kill sends SIGKILL to everything in the box.
func (b *box) kill() error {
	if b.group != nil {
		return b.group.Kill()
	}
	err := syscall.Kill(-b.pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		err = nil
	}
	return errors.Join(err, killMarked(b.id, 0))
}

// waitGone returns once nothing of the box is left, or with ctx's error.
func (b *box) waitGone(ctx context.Context) error {
	if b.group != nil {
		return b.group.WaitEmpty(ctx)
	}
	interval := groupPollMin
	for b.alive() {
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		interval = min(interval*2, groupPollMax)
	}
	return nil
}

// oomKilled reports whether the kernel's OOM killer killed a process of
// the box's cgroup.
func (b *box) oomKilled() bool {
	if b.group == nil || !b.memory {
		return false
	}
	n, err := b.group.OOMKills()
	return err == nil && n > 0
}

// release removes the box's cgroup, which must be empty; the box is not
// used after.
func (b *box) release() error {
	if b.group == nil {
		return nil
	}
	return b.group.Remove()
}
