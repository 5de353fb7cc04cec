// Package forkwatch ends a start stuck in its fork. Go forks with
// CLONE_VFORK: the forking thread waits in clone until the child execs.
// The child takes the program's user before it execs, so that user may
// stop it there (SIGSTOP cannot be blocked; a child that called
// PTRACE_TRACEME stops at any signal, for a tracer that is the very
// thread stuck in clone). Unwatched, the start would never return.
package forkwatch

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Bound is how long a start may take before its child is killed: the
// vfork window (setpgid, credentials, chdir, dup2s, up to the exec's
// switch of address space) takes microseconds, a loaded machine
// milliseconds; a second is far beyond either, and short enough that the
// daemon, which holds its lock meanwhile, stalls only briefly.
const Bound = time.Second

// scanned, when set (tests), is called after each look at the children.
var scanned func()

// kcmpVM is KCMP_VM (linux/kcmp.h): same address space.
const kcmpVM = 1

// Start runs start (os.StartProcess, exec.Cmd.Start), which must fork
// from the caller's thread, locked with runtime.LockOSThread. Should
// start not return within bound, the child still sharing this process's
// address space (the vfork child, before its exec) is killed with
// SIGKILL, which ends the vfork; Start then reports stalled. start
// itself may then report success (the killed child never wrote an exec
// error): the caller must treat the program as dead, reap it and say so.
func Start(bound time.Duration, start func() error) (stalled bool, err error) {
	tid := unix.Gettid()
	var before map[int]bool // children not to kill, where kcmp cannot tell
	if !kcmpWorks() {
		before = children(tid)
	}
	// A timer, not a goroutine: a start that returns in time pays for
	// no thread woken up while it forks.
	var mu sync.Mutex
	var finished, killed bool
	var t *time.Timer
	watch := func() {
		mu.Lock()
		defer mu.Unlock()
		if finished {
			return
		}
		for pid := range children(tid) {
			if !before[pid] && inVfork(pid) && unix.Kill(pid, unix.SIGKILL) == nil {
				killed = true
			}
		}
		if scanned != nil {
			scanned()
		}
		// The fork may not have happened yet (a slow lookup before
		// it): look again until start returns.
		t.Reset(bound / 10)
	}
	mu.Lock()
	t = time.AfterFunc(bound, watch)
	mu.Unlock()
	err = start()
	// The child is not reaped before this returns, so its pid is not
	// reused while the watch may still signal it; after this, it does not.
	mu.Lock()
	finished = true
	t.Stop()
	mu.Unlock()
	return killed, err
}

// inVfork reports whether child pid shares this process's address space,
// as a vfork child does until its exec. Without kcmp (a kernel without
// CONFIG_CHECKPOINT_RESTORE) it cannot tell, and says yes: Start then
// asks only about a child that is new, of a thread stuck forking it.
func inVfork(pid int) bool {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(os.Getpid()), uintptr(pid), kcmpVM, 0, 0, 0)
	if errno != 0 {
		return errno != unix.ESRCH
	}
	return r == 0
}

// kcmpWorks reports whether kcmp tells this process's address space
// from others.
var kcmpWorks = sync.OnceValue(func() bool {
	self := uintptr(os.Getpid())
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, self, self, kcmpVM, 0, 0, 0)
	return errno == 0 && r == 0
})

// children returns the children forked by thread tid of this process.
func children(tid int) map[int]bool {
	b, _ := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/children")
	m := make(map[int]bool)
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			m[pid] = true
		}
	}
	return m
}

// ErrStalled is the error of a start whose child Start killed.
var ErrStalled = errors.New("the program was stopped before its exec (by a signal from its user?) and killed")
