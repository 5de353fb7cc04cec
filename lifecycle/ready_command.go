package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// ready: {command: ...}: a command run until it exits 0, each try bounded
// by commandTryTimeout, as the app's program runs (its user, group,
// limits, umask, dir and environment).

const (
	// maxCommandOutput is how much of a try's output is kept, for the
	// message of a start that times out.
	maxCommandOutput = 256
	// commandWaitDelay bounds the wait for a try's output once it exited:
	// something it left in the background may hold the pipe.
	commandWaitDelay = 100 * time.Millisecond
)

// errNoGuard is the start's error when a ready.command would run with
// more rights than the app's program.
var errNoGuard = errors.New("needs Config.StartGroup to run as the app's user, group, limits and umask")

// readyCommand returns one try of spec's ready.command for a start on
// port with environment env.
func (m *Manager) readyCommand(spec *appfile.Spec, port int, socket string, env []string) func(context.Context) error {
	argv := expandArgs(spec.Ready.Command, port, socket)
	return func(ctx context.Context) error {
		return m.runReadyCommand(ctx, spec, argv, env)
	}
}

// runReadyCommand runs argv once and returns nil when it exits 0, or why
// not with the first bytes of its output.
func (m *Manager) runReadyCommand(ctx context.Context, spec *appfile.Spec, argv, env []string) error {
	out := &headBuffer{max: maxCommandOutput}
	err := m.runGroup(ctx, spec, argv, env, out, commandTryTimeout)
	if err == nil {
		return nil
	}
	if text := strings.Join(strings.Fields(string(out.b)), " "); text != "" {
		return fmt.Errorf("ready.command: %w: %s", err, text)
	}
	return fmt.Errorf("ready.command: %w", err)
}

// runGroup runs argv once in a process group of its own, as spec's program
// runs (Config.StartGroup: its user, group, limits and umask), in its dir
// with env, output to out, and returns nil when it exits 0. Past timeout,
// or when ctx ends, the group is killed; what the command left behind in
// its group is killed too. ready.command and hooks run through it.
func (m *Manager) runGroup(ctx context.Context, spec *appfile.Spec, argv, env []string, out io.Writer, timeout time.Duration) error {
	guarded := spec.User != "" || spec.Group != "" || spec.Limits != (appfile.Limits{}) || spec.Umask != ""
	if guarded && m.cfg.StartGroup == nil {
		return errNoGuard
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = commandWaitDelay
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	untrack := func() {}
	var err error
	if m.cfg.StartGroup != nil {
		untrack, err = m.cfg.StartGroup(cmd, spec, argv[0])
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return err
	}
	defer untrack()
	pgid := cmd.Process.Pid
	began := time.Now()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		// The leader is not reaped yet: the group is still ours to kill.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		err = <-waited
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w: still running after %v", errRunTimeout, time.Since(began).Round(time.Millisecond))
		}
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // it exited 0; a leftover of it held the output
	}
	if syscall.Kill(-pgid, 0) == nil {
		// Members left: the group still exists, so its id is not reused.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return err
}

// errRunTimeout: a command run by runGroup was killed at its timeout.
var errRunTimeout = errors.New("killed")

// headBuffer keeps the first max bytes written to it and drops the rest,
// so that a chatty command costs nothing but the copy.
type headBuffer struct {
	b   []byte
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
