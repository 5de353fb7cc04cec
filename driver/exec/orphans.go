package execdriver

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Without cgroups, a process that calls setsid leaves its app's process
// group, and one whose parent exits is reparented. With the daemon as the
// child subreaper, such orphans are reparented to the daemon instead of
// init: they stay below it, and the invocation id in their environment
// says whose they are. A stop kills them with their app, and the daemon
// reaps them once dead.

// UseSubreaper makes the daemon the child subreaper of everything it
// starts (PR_SET_CHILD_SUBREAPER) and reaps the orphans that come back
// to it: the process-group containment. It marks the whole process.
func (d *Driver) UseSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming the child subreaper: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sigchld != nil || d.closed {
		return nil
	}
	d.sigchld = make(chan os.Signal, 1)
	signal.Notify(d.sigchld, syscall.SIGCHLD)
	d.wg.Add(1)
	go d.reapOrphans(d.sigchld)
	return nil
}

// reapOrphans reaps dead orphans at every SIGCHLD until Close stops it.
// A SIGCHLD also comes when a child stops or continues, at every freeze
// and thaw (SIGSTOP, SIGCONT): with no child to reap, /proc is not
// scanned, which would take the CPUs from the program being thawed.
func (d *Driver) reapOrphans(ch chan os.Signal) {
	defer d.wg.Done()
	for range ch {
		if zombieChild() {
			d.reapOrphansOnce()
		}
	}
}

// zombieChild reports whether a child of the daemon has ended and waits
// to be reaped, without reaping it; true when it cannot tell.
func zombieChild() bool { return zombie(unix.P_ALL, 0) }

// si_code of a child's end (CLD_EXITED, CLD_KILLED, CLD_DUMPED in
// asm-generic/siginfo.h).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// zombie is zombieChild for the children waitid's idType and id select.
// waitid reports a traced child's stops (CLD_TRAPPED) even without
// WSTOPPED, and only the first child it finds: a stop says that child
// has not ended, and nothing of the others.
func zombie(idType, id int) bool {
	var si unix.Siginfo
	err := unix.Waitid(idType, id, &si, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT|unix.WALL, nil)
	switch {
	case err == unix.ECHILD:
		return false
	case err != nil:
		return true
	case si.Signo != int32(unix.SIGCHLD):
		return false // no child has changed state
	case si.Code == cldExited || si.Code == cldKilled || si.Code == cldDumped:
		return true
	}
	return idType != unix.P_PID
}

// reapOrphansOnce reaps the zombie children of the daemon that it did not
// start itself. A child the daemon started (an app's leader, a job, a
// helper, another driver's command) joined a process group of its own
// in the daemon's session, and exec.Cmd.Wait reaps it; an orphan is in
// another process group than its own or in another session, and nobody
// else waits for it. The app leaders and jobs of this driver are skipped
// by pid, should one have made a session of its own.
func (d *Driver) reapOrphansOnce() {
	self := os.Getpid()
	sid, _ := unix.Getsid(0)
	for _, p := range procTable() {
		if p.ppid != self || !p.zombie || (p.pgid == p.pid && p.sid == sid) {
			continue
		}
		d.mu.Lock()
		_, leader := d.groups[p.pid]
		_, job := d.tracked[p.pid]
		if !leader && !job {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(p.pid, &ws, unix.WNOHANG, nil)
		}
		d.mu.Unlock()
	}
}

// procEntry is what /proc/PID/stat says of a process.
type procEntry struct {
	pid, ppid, pgid, sid int
	zombie               bool
}

// procTable reads every process's stat line; processes that go meanwhile
// are left out.
func procTable() []procEntry {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procEntry
	for _, e := range entries {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...; comm may hold ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 4 {
			continue
		}
		ppid, _ := strconv.Atoi(string(f[1]))
		pgid, _ := strconv.Atoi(string(f[2]))
		sid, _ := strconv.Atoi(string(f[3]))
		out = append(out, procEntry{pid: pid, ppid: ppid, pgid: pgid, sid: sid, zombie: f[0][0] == 'Z' || f[0][0] == 'X'})
	}
	return out
}

// markedProcs returns the live processes below the daemon whose
// environment holds invocation id id. Being below the daemon is the proof
// they are its; the id says whose.
func markedProcs(id string) []int { return findMarked(id, os.Getpid(), 0) }

// findMarked returns the live processes below ancestor self (anywhere: 0),
// and outside process group skip unless it is 0, whose environment holds
// invocation id id.
func findMarked(id string, self, skip int) []int {
	table := procTable()
	parent := make(map[int]int, len(table))
	for _, p := range table {
		parent[p.pid] = p.ppid
	}
	var out []int
	for _, p := range table {
		if p.zombie || p.pid == self || (skip != 0 && p.pgid == skip) || (self != 0 && !below(parent, p.pid, self)) {
			continue
		}
		if hasInvocation(p.pid, id) {
			out = append(out, p.pid)
		}
	}
	return out
}

// below reports whether pid descends from ancestor in the parent table.
func below(parent map[int]int, pid, ancestor int) bool {
	for range len(parent) { // bounded: a table read while it changes may loop
		pp, ok := parent[pid]
		if !ok || pp <= 1 {
			return false
		}
		if pp == ancestor {
			return true
		}
		pid = pp
	}
	return false
}

// hasInvocation reports whether process pid's environment holds
// InvocationEnv=id.
func hasInvocation(pid int, id string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil || id == "" {
		return false
	}
	want := []byte("\x00" + InvocationEnv + "=" + id + "\x00")
	return bytes.Contains(append(append([]byte{0}, env...), 0), want)
}

// killMarked kills the processes below the daemon that carry id, outside
// process group skip unless it is 0, in rounds until none is left, so that
// one forked meanwhile is caught by the next round.
func killMarked(id string, skip int) error {
	self := os.Getpid()
	for range killRounds {
		pids := findMarked(id, self, skip)
		if len(pids) == 0 {
			return nil
		}
		signalMarked(pids, id, unix.SIGKILL)
		time.Sleep(killRoundWait) // for the killed to die
	}
	return fmt.Errorf("processes of invocation %s still forking after %d rounds", id, killRounds)
}

// signalMarked sends sig to each of pids that still carries id, through a
// pidfd opened before the check: a pid reused meanwhile is not signalled.
func signalMarked(pids []int, id string, sig unix.Signal) {
	for _, pid := range pids {
		pfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone
		}
		if hasInvocation(pid, id) {
			_ = unix.PidfdSendSignal(pfd, sig, nil, 0)
		}
		unix.Close(pfd)
	}
}

// killRounds bounds killMarked; killRoundWait lets the killed die between
// rounds.
const (
	killRounds    = 100
	killRoundWait = time.Millisecond
)
