package execdriver

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/dynapm/dynapm/driver/exec/forkwatch"
	"github.com/dynapm/dynapm/driver/exec/listenpid"
)

// A handed-off program must find its own pid in LISTEN_PID, which systemd
// sets between fork and exec and os/exec cannot. The driver starts the
// program traced instead: it stops at its exec, before its first
// instruction; the daemon writes the pid over a placeholder at the end of
// its environment and lets it go (startTraced, package listenpid). Where tracing is not
// allowed (Yama ptrace_scope 3, a seccomp filter) or the program gains
// privileges at exec, a shell sets LISTEN_PID and execs the program, which
// costs about a millisecond more (listenPIDWrapper).

// listenPIDWrapper sets LISTEN_PID to the shell's own pid and execs the
// program in its place, so that the pid is the program's. $0 is the
// program's path, "$@" its arguments.
const listenPIDWrapper = `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`

// wrapInShell makes cmd run its program through listenPIDWrapper.
func wrapInShell(cmd *exec.Cmd) {
	cmd.Args = append([]string{"sh", "-c", listenPIDWrapper, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
}

// startTraced starts cmd with LISTEN_PID set to its pid (package
// listenpid). On a *listenpid.Error nothing of the program has run.
func startTraced(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	env := listenpid.Env(cmd.Env)
	cmd.Env = env
	sys := *cmd.SysProcAttr
	sys.Ptrace = true
	cmd.SysProcAttr = &sys
	// A traced child stops at any signal before its exec, for this
	// thread, stuck forking it: the watch kills it.
	if err := startWatchedLocked(cmd); err != nil {
		if errors.Is(err, forkwatch.ErrStalled) {
			return &listenpid.Error{Err: forkwatch.ErrStalled}
		}
		return err
	}
	pid := cmd.Process.Pid
	if err := listenpid.Write(pid, len(env)); err != nil {
		// Stopped (or gone): SIGKILL ends it before its first instruction.
		_ = unix.Kill(pid, unix.SIGKILL)
		_ = cmd.Wait()
		return err
	}
	return nil
}

// gainsPrivileges reports whether the program at path may gain privileges
// at exec (set-user-ID, set-group-ID, file capabilities): traced by a
// daemon without CAP_SYS_PTRACE it would run without them.
func gainsPrivileges(path string) bool {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return true // the shell's start will say what is wrong
	}
	if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return true
	}
	_, err := unix.Getxattr(path, "security.capability", nil)
	return err == nil || (err != unix.ENODATA && err != unix.ENOTSUP)
}

// traceRefused reports whether a traced start's error may be
// PTRACE_TRACEME's, refused by Yama, an LSM or a seccomp filter, which the
// child reports as its exec's error.
func traceRefused(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno == syscall.EPERM || errno == syscall.EACCES || errno == syscall.ENOSYS)
}

// traceWorks reports whether this process may start a program traced: it
// starts /bin/sh so, and kills it at its exec. In a process group of its
// own, so that no signal to the daemon's (a terminal's SIGWINCH) stops it
// before its exec, and watched should anything else.
func traceWorks() bool {
	cmd := exec.Command("/bin/sh", "-c", ":")
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true, Setpgid: true}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stalled, err := forkwatch.Start(forkwatch.Bound, cmd.Start)
	if err != nil {
		return false
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return !stalled
}

// startWatched is cmd.Start, its fork watched (package forkwatch) when
// the program takes another user's credentials, who could stop it before
// its exec and so hang the daemon: such a start fails with
// forkwatch.ErrStalled.
func startWatched(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil || cmd.SysProcAttr.Credential == nil {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return startWatchedLocked(cmd)
}

// startWatchedLocked is startWatched's watched start, on a thread the
// caller has locked: a stalled fork is killed, waited for, and fails with
// forkwatch.ErrStalled.
func startWatchedLocked(cmd *exec.Cmd) error {
	stalled, err := forkwatch.Start(forkwatch.Bound, cmd.Start)
	if !stalled {
		return err
	}
	if err == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	return fmt.Errorf("starting %s: %w", cmd.Path, forkwatch.ErrStalled)
}
