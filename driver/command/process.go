package cmddriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/lifecycle"
)

// process is one started command app. It has no process of its own: the
// app runs wherever its start command put it.
type process struct {
	driver *Driver
	spec   *appfile.Spec
	env    []string
	log    *slog.Logger

	// ctx ends watch (cancel at Stop); watching counts it.
	ctx      context.Context
	cancel   context.CancelFunc
	watching sync.WaitGroup

	// ExitState is Done, closed when Stop has stopped the app or when
	// check reports it gone, and Err: nil after Stop, wrapping
	// lifecycle.ErrStoppedOutside when check reported the app gone.
	lifecycle.ExitState

	stopOnce sync.Once
	stopErr  error // written once inside stopOnce
}

// Pid is 0: the app's processes are not DynaPM's children.
func (p *process) Pid() int { return 0 }

// watch runs check every CheckInterval until Stop, and ends the process
// when check reports the app gone. A check that cannot run (timeout) is
// logged and tried again: it says nothing about the app.
func (p *process) watch() {
	defer p.watching.Done()
	t := time.NewTicker(p.driver.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		running, err := p.driver.check(p.ctx, p.spec, p.env)
		switch {
		case p.ctx.Err() != nil:
			return
		case err != nil:
			p.log.Warn("checking whether the app runs", "err", err)
		case !running:
			// Gone while DynaPM believed it up: someone stopped it.
			p.Finish(fmt.Errorf("check command reports it not running: %w", lifecycle.ErrStoppedOutside))
			return
		}
	}
}

// Stop runs the stop command (sig is not used: the command says how to
// stop), bounded by timeout, and with a check waits within the same bound
// until check reports the app gone. An app that check already reported
// gone is not stopped again. Stop is safe to call more than once.
func (p *process) Stop(_ syscall.Signal, timeout time.Duration) error {
	p.stopOnce.Do(func() {
		p.cancel()
		p.watching.Wait()
		if !errors.Is(p.Err(), lifecycle.ErrStoppedOutside) {
			p.stopErr = p.stop(timeout)
		}
		p.Finish(nil)
	})
	return p.stopErr
}

// stop runs the stop command and waits for check to agree.
func (p *process) stop(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, time.Second))
	defer cancel()
	if err := run(ctx, p.spec.StopCommand, p.spec.Dir, p.env, nil); err != nil {
		return fmt.Errorf("stop command: %w", err)
	}
	if len(p.spec.CheckCommand) == 0 {
		return nil
	}
	interval := p.driver.cfg.StopPollInterval
	for {
		running, err := p.driver.check(ctx, p.spec, p.env)
		if err == nil && !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("check still reports it running %v after the stop command", timeout)
		case <-time.After(interval):
		}
	}
}
