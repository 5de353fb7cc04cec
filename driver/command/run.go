package cmddriver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// waitDelay bounds how long a finished command's output pipes may be held
// open by a background child (check and stop output go to a pipe).
const waitDelay = time.Second

// exitError is a command that ran and exited with a non-zero status.
type exitError struct {
	status string
}

func (e *exitError) Error() string { return e.status }

// run runs argv in dir with env, in a process group of its own, and waits
// for it. out receives stdout and stderr (nil: discarded). When ctx ends
// first the whole group is killed: a start that does not return must not
// leave half an app behind. A program started in the background by argv
// (start: "prog &") stays in the group and outlives run.
func run(ctx context.Context, argv []string, dir string, env []string, out *os.File) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if out != nil {
		// The file itself, not a pipe: a background program keeping it
		// open must not keep Wait from returning.
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%q did not return: %w", argv, context.Cause(ctx))
	case errors.As(err, &ee):
		return &exitError{status: ee.ProcessState.String()}
	}
	return err
}
