package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dynapm/dynapm/admin"
	"github.com/dynapm/dynapm/appsdir"
	"github.com/dynapm/dynapm/cron"
	"github.com/dynapm/dynapm/lifecycle"
)

// adminController adapts the lifecycle manager to admin.Controller, so
// that the admin package needs nothing from lifecycle.
type adminController struct {
	mgr *lifecycle.Manager
	// rss, when set, is an app's resident memory as last measured (0 when
	// unknown): memory.Monitor.LastRSS.
	rss func(app string) int64
	// sched, when set, gives each app's next scheduled wake and last job.
	sched *cron.Scheduler
	// refused, when set, gives the app files not in force: each is
	// shown as an app in state error, so that status lists every file.
	refused func() []appsdir.Refused
	// stateDir, when set, is where pins and disables are saved
	// (admin.SaveOverrides); overMu orders the saves.
	stateDir string
	overMu   sync.Mutex
}

// StateError is the state of an app whose file is not in force.
const StateError = "error"

// Apps reports every app in the admin API's wire form.
func (c *adminController) Apps() []admin.App {
	st := c.mgr.Status()
	out := make([]admin.App, 0, len(st))
	for _, s := range st {
		a := admin.App{
			Name:           s.Name,
			State:          string(s.State),
			Mode:           string(s.Mode),
			Handoff:        s.Handoff,
			Pid:            s.Pid,
			Connections:    s.Connections,
			Pending:        s.Pending,
			LastActivity:   s.LastActivity,
			StopsAt:        s.StopsAt,
			Listen:         s.Listen,
			Upstream:       s.Upstream,
			LastError:      s.LastError,
			Status:         s.StatusText,
			Starts:         s.Starts,
			Restarts:       s.Restarts,
			LastStopKilled: s.LastStopKilled,
			Needs:          s.Needs,
			NeededBy:       s.NeededBy,
			KeptUpBy:       s.KeptUpBy,
			Pinned:         s.Pinned,
			PinnedUntil:    s.PinnedUntil,
			Disabled:       s.Disabled,
			Exclusive:      s.Exclusive,
		}
		for _, in := range s.Instances {
			a.Instances = append(a.Instances, admin.Instance{
				Index:       in.Index,
				Pid:         in.Pid,
				State:       string(in.State),
				Upstream:    in.Upstream,
				Connections: in.Connections,
				StartedAt:   in.StartedAt,
				Status:      in.StatusText,
			})
		}
		if s.Pid != 0 {
			a.StartedAt = s.StartedAt
			if c.rss != nil {
				a.RSSBytes = uint64(max(c.rss(s.Name), 0))
			}
		}
		if c.sched != nil {
			a.NextWake = c.sched.NextWake(s.Name)
			if r, ok := c.sched.LastJob(s.Name); ok {
				a.LastJob = jobOf(r)
			}
		}
		out = append(out, a)
	}
	if c.refused != nil {
		for _, r := range c.refused() {
			out = append(out, admin.App{Name: r.Name, State: StateError, File: r.File,
				LastError: r.Err, Listen: []string{}, Instances: []admin.Instance{}})
		}
		slices.SortStableFunc(out, func(a, b admin.App) int { return strings.Compare(a.Name, b.Name) })
	}
	return out
}

// jobOf is a job result in the admin API's wire form.
func jobOf(r cron.JobResult) *admin.Job {
	j := &admin.Job{
		Command:  r.Command,
		Started:  r.Time,
		Seconds:  r.Duration.Seconds(),
		ExitCode: r.ExitCode,
	}
	if r.Err != nil {
		j.Error = r.Err.Error()
	}
	return j
}

// Start is a manual start: it ignores a failed app's backoff.
func (c *adminController) Start(ctx context.Context, name string) error {
	return c.adminError(name, c.mgr.Start(ctx, name, "manual"))
}

// Stop is a manual stop.
func (c *adminController) Stop(ctx context.Context, name string) error {
	return c.adminError(name, c.mgr.Stop(ctx, name, "manual"))
}

// Restart stops the app if it runs and waits until it is ready again.
func (c *adminController) Restart(ctx context.Context, name string) error {
	return c.adminError(name, c.mgr.Restart(ctx, name))
}

// Override pins, unpins, disables or enables an app, then saves every
// override in the state directory, so that the change survives a restart.
// A pin is saved before the app is ready: it holds even if the start fails.
func (c *adminController) Override(ctx context.Context, name string, o admin.OverrideRequest) error {
	var err error
	switch o.Action {
	case "pin":
		var until time.Time
		if o.For > 0 {
			until = time.Now().Add(o.For)
		}
		err = c.mgr.Pin(ctx, name, until)
	case "unpin":
		err = c.mgr.Unpin(name)
	case "disable":
		err = c.mgr.Disable(ctx, name)
	case "enable":
		err = c.mgr.Enable(name)
	default:
		return fmt.Errorf("unknown action %q", o.Action)
	}
	if errors.Is(err, lifecycle.ErrUnknownApp) {
		return c.adminError(name, err)
	}
	if serr := c.saveOverrides(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// saveOverrides writes the Manager's overrides to the state directory.
func (c *adminController) saveOverrides() error {
	if c.stateDir == "" {
		return nil
	}
	c.overMu.Lock()
	defer c.overMu.Unlock()
	var list []admin.Override
	for _, o := range c.mgr.Overrides() {
		list = append(list, admin.Override{App: o.App, Pinned: o.Pinned, PinnedUntil: o.PinnedUntil, Disabled: o.Disabled})
	}
	return admin.SaveOverrides(c.stateDir, list)
}

// restoreOverrides gives the Manager the overrides saved by an earlier
// daemon, before the first app file is applied. A file that cannot be read
// is logged and left to be replaced at the next change.
func (c *adminController) restoreOverrides(log *slog.Logger) {
	saved, err := admin.LoadOverrides(c.stateDir)
	if err != nil {
		log.Error("pins and disables of the last daemon are lost", "err", err)
		return
	}
	list := make([]lifecycle.Override, 0, len(saved))
	for _, o := range saved {
		list = append(list, lifecycle.Override{App: o.App, Pinned: o.Pinned, PinnedUntil: o.PinnedUntil, Disabled: o.Disabled})
	}
	c.mgr.SetOverrides(list)
}

// adminError marks lifecycle's unknown-app errors for the admin API (404),
// but for an app whose file is not in force, which says why.
func (c *adminController) adminError(name string, err error) error {
	if !errors.Is(err, lifecycle.ErrUnknownApp) {
		return err
	}
	if c.refused != nil {
		for _, r := range c.refused() {
			if r.Name == name {
				return fmt.Errorf("app %q is not served: its file %s was refused: %s",
					name, r.File, strings.ReplaceAll(r.Err, "\n", "; "))
			}
		}
	}
	return fmt.Errorf("%w: %w", admin.ErrUnknownApp, err)
}
