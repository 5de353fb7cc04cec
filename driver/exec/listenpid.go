package execdriver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A handed-off program must find its own pid in LISTEN_PID, which systemd
// sets between fork and exec and os/exec cannot. The driver starts the
// program traced instead: it stops at its exec, before its first
// instruction; the daemon writes the pid over a placeholder at the end of
// its environment and lets it go (startTraced). Where tracing is not
// allowed (Yama ptrace_scope 3, a seccomp filter) or the program gains
// privileges at exec, a shell sets LISTEN_PID and execs the program, which
// costs about a millisecond more (listenPIDWrapper).

// listenPIDPlaceholder is the last variable of a traced program's
// environment until its pid is written over the zeros, followed by NULs:
// "LISTEN_PID=1234\0\0\0". Every reader sees a plain decimal number
// (leading zeros would be octal to strtoul with base 0, or to the shell).
// Seven digits: pid_max is at most 2^22 (4194304).
const listenPIDPlaceholder = "LISTEN_PID=0000000"

// listenPIDWrapper sets LISTEN_PID to the shell's own pid and execs the
// program in its place, so that the pid is the program's. $0 is the
// program's path, "$@" its arguments.
const listenPIDWrapper = `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`

// wrapInShell makes cmd run its program through listenPIDWrapper.
func wrapInShell(cmd *exec.Cmd) {
	cmd.Args = append([]string{"sh", "-c", listenPIDWrapper, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
}

// traceError is a failure after a traced start: the program was killed
// before it ran, and may be started another way. lasting: every traced
// start would fail so.
type traceError struct {
	err     error
	lasting bool
}

func (e *traceError) Error() string {
	return "setting LISTEN_PID in the traced program: " + e.err.Error()
}
func (e *traceError) Unwrap() error { return e.err }

// startTraced starts cmd with LISTEN_PID set to its pid: traced, stopped
// at its exec, the pid written over listenPIDPlaceholder, detached. The
// tracer is the thread that forks, so the whole sequence runs on one
// locked thread. On a *traceError nothing of the program has run.
func startTraced(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Unique keys, so that exec passes the environment as it is and the
	// placeholder is the last of len(env) variables.
	env := append(dedupEnv(cmd.Env), listenPIDPlaceholder)
	cmd.Env = env
	sys := *cmd.SysProcAttr
	sys.Ptrace = true
	cmd.SysProcAttr = &sys
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	if err := writeListenPID(pid, len(env)); err != nil {
		// Stopped (or gone): SIGKILL ends it before its first instruction.
		_ = unix.Kill(pid, unix.SIGKILL)
		_ = cmd.Wait()
		var te *traceError
		if errors.As(err, &te) {
			return te
		}
		return &traceError{err: err}
	}
	return nil
}

// writeListenPID waits for traced child pid to stop at its exec, writes
// its pid in the placeholder that ends its envc variables and detaches
// from it. It finds the placeholder from the stack pointer, as the
// kernel lays out a new program's stack: argc, argv, NULL, envp, NULL
// (only the tracer's rights are needed, not those to read /proc/PID).
func writeListenPID(pid, envc int) error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("wait4", err)
		}
		break
	}
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("wait status %#x, want the stop at exec", uint32(ws))
	}
	// Should the daemon die before the detach, the program dies too
	// rather than run with a wrong LISTEN_PID.
	if err := unix.PtraceSetOptions(pid, unix.PTRACE_O_EXITKILL); err != nil {
		return os.NewSyscallError("ptrace(SETOPTIONS)", err)
	}
	var info struct {
		op     uint8
		_      [3]uint8
		arch   uint32
		ip, sp uint64
		_      [64]byte
	}
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GET_SYSCALL_INFO, uintptr(pid),
		unsafe.Sizeof(info), uintptr(unsafe.Pointer(&info)), 0, 0); errno != 0 {
		// EIO: a kernel before 5.3, where every traced start would fail.
		return &traceError{err: os.NewSyscallError("ptrace(GET_SYSCALL_INFO)", errno), lasting: errno == unix.EIO}
	}
	const ptrSize = unsafe.Sizeof(uintptr(0))
	const audit64 = 0x80000000 // __AUDIT_ARCH_64BIT
	if (info.arch&audit64 != 0) != (ptrSize == 8) {
		return fmt.Errorf("program of another word size (audit arch %#x)", info.arch)
	}
	argc, err := peekWord(pid, uintptr(info.sp))
	if err != nil {
		return err
	}
	// envp[envc-1], which must be followed by envp's NULL.
	at := uintptr(info.sp) + ptrSize*(1+argc+1+uintptr(envc)-1)
	addr, err := peekWord(pid, at)
	if err != nil {
		return err
	}
	if next, err := peekWord(pid, at+ptrSize); err != nil || next != 0 {
		return fmt.Errorf("the program's environment holds more than %d variables (%v)", envc, err)
	}
	want := listenPIDPlaceholder + "\x00"
	got := make([]byte, len(want))
	if _, err := unix.PtracePeekData(pid, addr, got); err != nil {
		return os.NewSyscallError("ptrace(PEEKDATA)", err)
	}
	if string(got) != want {
		return fmt.Errorf("%q as the last variable of the environment, want %q", got, want)
	}
	digits := make([]byte, len(listenPIDPlaceholder)-len("LISTEN_PID=")) // NULs after the pid
	if copy(digits, strconv.Itoa(pid)) != len(strconv.Itoa(pid)) {
		return fmt.Errorf("pid %d does not fit in %d digits", pid, len(digits))
	}
	if _, err := unix.PtracePokeData(pid, addr+uintptr(len("LISTEN_PID=")), digits); err != nil {
		return os.NewSyscallError("ptrace(POKEDATA)", err)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return os.NewSyscallError("ptrace(DETACH)", err)
	}
	return nil
}

// peekWord reads the word at addr in traced process pid.
func peekWord(pid int, addr uintptr) (uintptr, error) {
	var w uintptr
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&w)), unsafe.Sizeof(w))
	if _, err := unix.PtracePeekData(pid, addr, buf); err != nil {
		return 0, os.NewSyscallError("ptrace(PEEKDATA)", err)
	}
	return w, nil
}

// dedupEnv returns env with the last value of each variable only, in
// the order exec keeps them: its own deduplication (os/exec dedupEnv).
func dedupEnv(env []string) []string {
	seen := make(map[string]bool, len(env))
	out := make([]string, 0, len(env)+1)
	for n := len(env); n > 0; n-- {
		kv := env[n-1]
		i := strings.Index(kv, "=")
		if i == 0 {
			i = strings.Index(kv[1:], "=") + 1
		}
		if i < 0 {
			if kv != "" {
				out = append(out, kv)
			}
			continue
		}
		if seen[kv[:i]] {
			continue
		}
		seen[kv[:i]] = true
		out = append(out, kv)
	}
	slices.Reverse(out)
	return out
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
// starts /bin/sh so, and kills it at its exec.
func traceWorks() bool {
	cmd := exec.Command("/bin/sh", "-c", ":")
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return false
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return true
}
