package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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
}

// StateError is the state of an app whose file is not in force.
const StateError = "error"

// Apps reports every app in the admin API's wire form, and every app file
// that is not in force as an app in state error.
func (c *adminController) Apps() []admin.App {
	out := c.servedApps()
	if c.refused != nil {
		for _, r := range c.refused() {
			out = append(out, admin.App{Name: r.Name, State: StateError, File: r.File,
				LastError: r.Err, Listen: []string{}, Instances: []admin.Instance{}})
		}
		slices.SortStableFunc(out, func(a, b admin.App) int { return strings.Compare(a.Name, b.Name) })
	}
	return out
}

// servedApps reports the apps in force (the metrics' apps).
func (c *adminController) servedApps() []admin.App {
	st := c.mgr.Status()
	out := make([]admin.App, 0, len(st))
	for _, s := range st {
		a := admin.App{
			Name:         s.Name,
			State:        string(s.State),
			Mode:         string(s.Mode),
			Pid:          s.Pid,
			Connections:  s.Connections,
			Pending:      s.Pending,
			LastActivity: s.LastActivity,
			StopsAt:      s.StopsAt,
			Listen:       s.Listen,
			Upstream:     s.Upstream,
			LastError:    s.LastError,
			Status:       s.StatusText,
			Starts:       s.Starts,
			Restarts:     s.Restarts,
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
