package execdriver

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/dynapm/dynapm/lifecycle"
)

var _ lifecycle.Freezer = (*process)(nil)

// Freeze suspends every process of the group with SIGSTOP
// (idle_action: freeze). The reach is the process group, as for a stop: a
// process that left it is not suspended. A program can neither catch nor
// ignore SIGSTOP; it keeps its memory and its sockets, and uses no CPU
// until Thaw.
func (p *process) Freeze(ctx context.Context) error {
	return p.signalGroup(syscall.SIGSTOP)
}

// Thaw resumes the group with SIGCONT. A group that is gone has nothing
// to resume.
func (p *process) Thaw(ctx context.Context) error {
	return p.signalGroup(syscall.SIGCONT)
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
