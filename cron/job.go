package cron

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// runJob runs job i of spec to completion and records the result.
func (s *Scheduler) runJob(spec *appfile.Spec, i int) {
	job := spec.Jobs[i]
	start := time.Now()
	res := JobResult{Time: start, Job: i, Command: job.Command, ExitCode: -1}
	res.Err = s.runJobRecovered(spec, i, start, &res)
	res.Duration = time.Since(start)
	s.record(spec.Name, res)

	attrs := []any{"app", spec.Name, "job", i, "cron", job.Cron, "exit_code", res.ExitCode,
		"duration", res.Duration.Round(time.Millisecond)}
	if res.Err != nil {
		s.log.Warn("job failed", append(attrs, "err", res.Err)...)
		return
	}
	s.log.Info("job finished", attrs...)
}

// runJobRecovered is runJobOnce with a panic (in the waker, the log
// opener, the group starter...) logged and turned into the run's error, so
// that the run has a result that status shows. The deferred releases in
// runJobOnce (the app's lease, the log) have run by then.
func (s *Scheduler) runJobRecovered(spec *appfile.Spec, i int, start time.Time, res *JobResult) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logPanic(spec.Name, kindJob, i, spec.Jobs[i].Cron, r)
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return s.runJobOnce(spec, i, start, res)
}

// runJobOnce wakes the app if the job needs it, runs the command with its
// output in the app's log between marker lines, and fills res.ExitCode.
func (s *Scheduler) runJobOnce(spec *appfile.Spec, i int, start time.Time, res *JobResult) error {
	job := spec.Jobs[i]
	if len(job.Command) == 0 {
		return errors.New("running job: empty command")
	}
	logf, closeLog, err := s.openLog(spec.Name)
	if err != nil {
		return err
	}
	defer closeLog()

	var deadline time.Time
	if job.Timeout > 0 {
		deadline = start.Add(job.Timeout)
	}
	argv, env := job.Command, spec.EnvironWithoutPort()
	if job.NeedsApp {
		ctx, cancel := context.WithCancel(s.stopping)
		if !deadline.IsZero() {
			ctx, cancel = context.WithDeadline(s.stopping, deadline)
		}
		upstream, release, err := s.cfg.Waker.WakeFor(ctx, spec.Name, "cron")
		cancel()
		if err != nil {
			// err names the app and says what failed.
			fmt.Fprintf(logf, "--- job %d (cron %s) not run: %v ---\n", i, job.Cron, err)
			return err
		}
		defer release()
		port := int(upstream.Port())
		argv, env = appfile.ExpandPorts(job.Command, port), spec.Environ(port)
	}

	fmt.Fprintf(logf, "--- job %d (cron %s) started ---\n", i, job.Cron)
	code, err := s.runCommand(spec, i, argv, env, logf, deadline)
	res.ExitCode = code
	fmt.Fprintf(logf, "--- job %d %s after %s ---\n", i, describeExit(code, err), time.Since(start).Round(time.Millisecond))
	return err
}

// describeExit is the end of a job's closing marker line.
func describeExit(code int, err error) string {
	switch {
	case err == nil:
		return "exited 0"
	case code >= 0:
		return fmt.Sprintf("exited %d", code)
	default:
		return strings.ReplaceAll(err.Error(), "\n", " ")
	}
}

// openLog returns the writer for the app's log and the function that
// closes it: from Config.Logs, or the file LogDir/NAME.log opened for
// appending (created, with LogDir, private to the daemon's user). With
// Config.Logs, closing waits (up to KillGrace) until the job's output is in
// the log, so that it is there before the job's result is recorded.
func (s *Scheduler) openLog(app string) (*os.File, func(), error) {
	if s.cfg.Logs != nil {
		w, wait, err := s.cfg.Logs.Open(app)
		if err != nil {
			return nil, nil, fmt.Errorf("opening log: %w", err)
		}
		return w, func() {
			w.Close()
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.KillGrace)
			defer cancel()
			if err := wait(ctx); err != nil {
				// Only a process that left the job's group can still hold
				// the pipe; its output is copied on when it comes.
				s.log.Warn("job output not all in the log yet", "app", app, "err", err)
			}
		}, nil
	}
	dir := s.cfg.LogDir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("creating log directory: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, app+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening log: %w", err)
	}
	return f, func() { f.Close() }, nil
}
