package cron

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// groupPoll is how often a process group that was told to stop is checked
// for members left.
const groupPoll = 20 * time.Millisecond

// runCommand runs argv in its own process group with its output in logf and
// returns its exit code (-1 when it did not exit on its own) and an error
// when it did not exit 0. Past deadline (if not zero) the group gets
// SIGTERM, then SIGKILL after KillGrace; when the shutdown grace is over it
// gets SIGKILL. Processes the command leaves behind in its group are
// stopped the same way once it exits: a job ends with all it started.
func (s *Scheduler) runCommand(spec *appfile.Spec, i int, argv, env []string, logf *os.File, deadline time.Time) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = env
	// The file itself, not a pipe: a background process holding the output
	// open must not keep Wait from returning.
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	untrack := func() {}
	var err error
	if s.cfg.StartGroup != nil {
		untrack, err = s.cfg.StartGroup(cmd, spec, argv[0])
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return -1, fmt.Errorf("starting job: %w", err)
	}
	// Deferred before the waits below return: every return path has
	// waited for the leader and stopped what it left behind.
	defer untrack()
	s.jobsRunning.Add(1)
	defer s.jobsRunning.Add(-1)
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go waitJob(cmd, done)

	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	var waitErr error
	select {
	case waitErr = <-done:
		if !groupGone(pgid) {
			s.log.Warn("job left processes behind, stopping them", "app", spec.Name, "job", i, "pgid", pgid)
			s.stopGroup(pgid, nil, s.cfg.KillGrace)
		}
		return exitCode(waitErr), waitErr
	case <-timeout:
		s.log.Warn("job timed out, stopping its process group", "app", spec.Name, "job", i,
			"timeout", spec.Jobs[i].Timeout, "pgid", pgid)
		waitErr = s.stopGroup(pgid, done, s.cfg.KillGrace)
		return -1, fmt.Errorf("job timed out after %s: %w", spec.Jobs[i].Timeout, waitErr)
	case <-s.kill.Done():
		s.log.Warn("killing job at shutdown", "app", spec.Name, "job", i, "pgid", pgid)
		waitErr = s.stopGroup(pgid, done, 0)
		return -1, fmt.Errorf("job killed at shutdown: %w", waitErr)
	}
}

// waitJob waits for the job's leader process and reports how it ended.
func waitJob(cmd *exec.Cmd, done chan<- error) {
	done <- cmd.Wait()
}

// stopGroup sends SIGTERM to process group pgid, waits up to grace for the
// leader (done, nil when it already exited) and the rest of the group to
// end, then sends SIGKILL to what is left (at once when the shutdown grace
// runs out meanwhile) and waits for the leader. It returns the leader's
// wait error.
func (s *Scheduler) stopGroup(pgid int, done <-chan error, grace time.Duration) error {
	var waitErr error
	leaderDone, gone := done == nil, false
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		timer := time.NewTimer(grace)
		defer timer.Stop()
		poll := time.NewTicker(groupPoll)
		defer poll.Stop()
	wait:
		for {
			if leaderDone && groupGone(pgid) {
				gone = true
				break
			}
			select {
			case waitErr = <-done:
				leaderDone, done = true, nil
			case <-poll.C:
			case <-timer.C:
				break wait
			case <-s.kill.Done():
				break wait
			}
		}
	}
	// While the leader is unreaped, or any member is alive, the pgid cannot
	// belong to anyone else; once the group is seen gone it is not signalled.
	if !gone {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if !leaderDone {
		waitErr = <-done
	}
	return waitErr
}

// groupGone tells whether process group pgid has no member left.
func groupGone(pgid int) bool {
	return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

// exitCode is the exit status in a Wait error: 0 for nil, -1 when the
// process did not exit on its own.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
