package execdriver

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/dynapm/dynapm/driver/exec/cgroup"
	"github.com/dynapm/dynapm/lifecycle"
)

var _ lifecycle.QuickThawer = (*process)(nil)

// Freeze suspends every process of the app (idle_action: freeze): its
// cgroup through cgroup.freeze, descendants that left the process group
// included; without cgroups the process group with SIGSTOP, which a
// program can neither catch nor ignore. The processes keep their memory
// and sockets and use no CPU until Thaw.
func (p *process) Freeze(ctx context.Context) error {
	if g := p.cgroup(); g != nil {
		return p.ifLive(g.Freeze(ctx))
	}
	return p.signalGroup(syscall.SIGSTOP)
}

// Thaw resumes what Freeze suspended (ThawNow) and, for a cgroup, waits
// until the kernel reports it running: a frozen parent may hold it. An
// app that is gone has nothing to resume.
func (p *process) Thaw(ctx context.Context) error {
	if err := p.ThawNow(); err != nil {
		return err
	}
	if g := p.cgroup(); g != nil {
		return p.ifLive(g.WaitThawed(ctx))
	}
	return nil
}

// ThawNow resumes what Freeze suspended without waiting for the kernel
// to report it.
func (p *process) ThawNow() error {
	if g := p.cgroup(); g != nil {
		return p.ifLive(g.Resume())
	}
	return p.signalGroup(syscall.SIGCONT)
}

// cgroup is the program's cgroup, nil under process-group containment
// or once the program is gone.
func (p *process) cgroup() *cgroup.Group {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone || p.box == nil {
		return nil
	}
	return p.box.group
}

// ifLive drops err when the program ended meanwhile: its cgroup may be
// removed under a Freeze or Thaw, which then has nothing left to do.
func (p *process) ifLive(err error) error {
	if err == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return nil
	}
	return err
}

// signalGroup sends sig to the group unless it is gone; under p.mu, as
// kill does, so that a pgid that may have been reused is never signalled.
func (p *process) signalGroup(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return nil
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %v to process group %d: %w", sig, p.pid, err)
	}
	return nil
}
