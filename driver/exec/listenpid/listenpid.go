// Package listenpid sets a program's LISTEN_PID to its own pid, as
// systemd sets it between fork and exec, which a Go program cannot: the
// program is started traced (SysProcAttr.Ptrace, on a locked OS thread,
// since the forking thread is the tracer) with Env's environment, stops
// at its exec before its first instruction, and Write puts its pid over
// the placeholder that ends its environment and lets it go. Both the exec
// driver and the spawner helper start programs so.
package listenpid

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Placeholder is the last variable of a traced program's environment
// until its pid is written over the zeros, followed by NULs:
// "LISTEN_PID=1234\0\0\0". Every reader sees a plain decimal number
// (leading zeros would be octal to strtoul with base 0, or to the shell).
// Seven digits: pid_max is at most 2^22 (4194304).
const Placeholder = "LISTEN_PID=0000000"

// Env returns env with the placeholder last and every other variable
// once (the last value of each, as exec keeps them), so that exec passes
// it as it is and the placeholder is the last of len(Env(env)) variables.
func Env(env []string) []string {
	return append(dedupEnv(env), Placeholder)
}

// Error is a failure of Write: the caller kills the program, which has
// not run, and may start it another way. Lasting: every traced start
// would fail so.
type Error struct {
	Err     error
	Lasting bool
}

func (e *Error) Error() string { return "setting LISTEN_PID in the traced program: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Write waits for traced child pid to stop at its exec, writes
// its pid in the placeholder that ends its envc variables and detaches
// from it. It finds the placeholder from the stack pointer, as the
// kernel lays out a new program's stack: argc, argv, NULL, envp, NULL
// (only the tracer's rights are needed, not those to read /proc/PID).
func Write(pid, envc int) error {
	if err := write(pid, envc); err != nil {
		if e, ok := err.(*Error); ok {
			return e
		}
		return &Error{Err: err}
	}
	return nil
}

func write(pid, envc int) error {
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
	if err := execStop(pid, ws); err != nil {
		return err
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
		return &Error{Err: os.NewSyscallError("ptrace(GET_SYSCALL_INFO)", errno), Lasting: errno == unix.EIO}
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
	want := Placeholder + "\x00"
	got := make([]byte, len(want))
	if _, err := unix.PtracePeekData(pid, addr, got); err != nil {
		return os.NewSyscallError("ptrace(PEEKDATA)", err)
	}
	if string(got) != want {
		return fmt.Errorf("%q as the last variable of the environment, want %q", got, want)
	}
	digits := make([]byte, len(Placeholder)-len("LISTEN_PID=")) // NULs after the pid
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

// execStop checks that traced child pid, whose wait status is ws, is
// stopped at its exec: the SIGTRAP that the kernel sends it there comes
// from the child itself (SI_USER, its own pid), which no other SIGTRAP
// does before the program runs (kill(2) from anyone else names the
// sender, or 0 from an outer pid namespace; a fault's has a code of its
// own).
func execStop(pid int, ws unix.WaitStatus) error {
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("wait status %#x, want the stop at exec", uint32(ws))
	}
	var si [128]byte // siginfo_t
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGINFO, uintptr(pid), 0,
		uintptr(unsafe.Pointer(&si[0])), 0, 0); errno != 0 {
		return os.NewSyscallError("ptrace(GETSIGINFO)", errno)
	}
	// si_signo, si_errno, si_code, then the union (8-aligned on 64-bit)
	// that starts with si_pid.
	code := int32(binary.NativeEndian.Uint32(si[8:]))
	at := 12
	if unsafe.Sizeof(uintptr(0)) == 8 {
		at = 16
	}
	sender := int32(binary.NativeEndian.Uint32(si[at:]))
	const siUser = 0 // SI_USER
	if code != siUser || int(sender) != pid {
		return fmt.Errorf("a SIGTRAP (code %d) from pid %d, want the stop at exec", code, sender)
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
