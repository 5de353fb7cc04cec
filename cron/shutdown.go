package cron

import (
	"context"
	"fmt"
	"time"
)

// Shutdown stops the scheduler: no entry fires any more, jobs waiting for
// their app to wake give up, and running jobs get ShutdownGrace (or until
// ctx ends, if sooner) to finish before their process groups are killed.
// It returns once no job runs, or KillGrace after the kill at the latest,
// with an error when jobs had to be killed or would not die. Later calls
// return the first call's result. Apply and Start do nothing afterwards.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Scheduler) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stopNow()
	// Stop ends the cron goroutine; its context is done once every Run
	// that started has returned.
	stopped := s.cron.Stop()
	grace := time.NewTimer(s.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-stopped.Done():
		s.killNow()
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	n := s.jobsRunning.Load()
	s.killNow()
	bound := time.NewTimer(s.cfg.KillGrace)
	defer bound.Stop()
	select {
	case <-stopped.Done():
		if n == 0 {
			return nil
		}
		return fmt.Errorf("stopping scheduler: killed %d running jobs", n)
	case <-bound.C:
		return fmt.Errorf("stopping scheduler: jobs still running %s after being killed", s.cfg.KillGrace)
	}
}
