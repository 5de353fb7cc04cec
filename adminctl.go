package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/dynapm/dynapm/admin"
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
}

// Apps reports every app in the admin API's wire form.
func (c *adminController) Apps() []admin.App {
	st := c.mgr.Status()
	out := make([]admin.App, 0, len(st))
	for _, s := range st {
		a := admin.App{
			Name:         s.Name,
			State:        string(s.State),
			Mode:         string(s.Mode),
			Handoff:      s.Handoff,
			Pid:          s.Pid,
			Connections:  s.Connections,
			Pending:      s.Pending,
			LastActivity: s.LastActivity,
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
	return adminError(c.mgr.Start(ctx, name, "manual"))
}

// Stop is a manual stop.
func (c *adminController) Stop(ctx context.Context, name string) error {
	return adminError(c.mgr.Stop(ctx, name, "manual"))
}

// Restart stops the app if it runs and waits until it is ready again.
func (c *adminController) Restart(ctx context.Context, name string) error {
	return adminError(c.mgr.Restart(ctx, name))
}

// adminError marks lifecycle's unknown-app errors for the admin API (404).
func adminError(err error) error {
	if errors.Is(err, lifecycle.ErrUnknownApp) {
		return fmt.Errorf("%w: %w", admin.ErrUnknownApp, err)
	}
	return err
}
