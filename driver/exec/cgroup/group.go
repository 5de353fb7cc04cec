package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Group is the cgroup of one app instance or cron job. Its methods are
// safe for concurrent use; after Close or Remove they fail.
type Group struct {
	s    *Subtree
	name string
	dir  *os.File // O_PATH descriptor of the group's directory
}

// Name is the group's name in the subtree.
func (g *Group) Name() string { return g.name }

// Path is the group's directory.
func (g *Group) Path() string { return g.dir.Name() }

// FD is the descriptor for SysProcAttr{UseCgroupFD: true, CgroupFD: fd},
// with which a program is born inside the group: there is no instant in
// which it runs untracked. It stays valid until Close or Remove.
func (g *Group) FD() int { return int(g.dir.Fd()) }

// Close releases the group's descriptor; the group stays.
func (g *Group) Close() error { return g.dir.Close() }

// Procs returns the processes in the group itself (not in groups an app
// made below it).
func (g *Group) Procs() ([]int, error) {
	data, err := g.read("cgroup.procs")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s/cgroup.procs: %q is not a pid", g.Path(), f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Populated reports whether a live process is in the group or below it.
func (g *Group) Populated() (bool, error) {
	v, err := g.event("populated")
	return v == 1, err
}

// Signal sends sig to every process in the group, for a stop signal that
// must reach every process. A process forked meanwhile may miss it.
func (g *Group) Signal(sig unix.Signal) error {
	_, err := g.signalAll(sig)
	return err
}

// Kill kills every process in the group and below it. It does not wait
// for them to be gone: WaitEmpty does.
func (g *Group) Kill() error {
	err := g.write("cgroup.kill", "1")
	if errors.Is(err, os.ErrNotExist) {
		return g.killEach()
	}
	return err
}

// Kernels before 5.14 have no cgroup.kill: killEach signals every member,
// each round waiting a little for the killed to leave, so that children
// forked meanwhile are caught by the next round. It does not reach groups
// an app made below its own.
const (
	killRounds    = 100
	killRoundWait = 50 * time.Millisecond
)

func (g *Group) killEach() error {
	for range killRounds {
		if _, err := g.signalAll(unix.SIGKILL); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), killRoundWait)
		err := g.WaitEmpty(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return fmt.Errorf("killing %s: still populated after %d rounds", g.Path(), killRounds)
}

// signalAll signals each member through a pidfd, and only after checking
// that the pidfd's process is in the group: a pid read from cgroup.procs
// may have been reused by the time it is signalled.
func (g *Group) signalAll(sig unix.Signal) (int, error) {
	pids, err := g.Procs()
	if err != nil {
		return 0, err
	}
	want := path.Join(g.s.cgPath, g.name)
	n := 0
	for _, pid := range pids {
		pfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone
		}
		// The pidfd was opened first, so a process this pid names now is
		// the pidfd's or the pidfd's is dead and the signal is refused.
		data, err := os.ReadFile(filepath.Join(g.s.procRoot, strconv.Itoa(pid), "cgroup"))
		if p, ok := v2Path(data); err == nil && ok && p == want {
			if unix.PidfdSendSignal(pfd, sig, nil, 0) == nil {
				n++
			}
		}
		unix.Close(pfd)
	}
	return n, nil
}

// WaitEmpty returns when no process is left in the group or below it,
// or with ctx's error when ctx ends first.
func (g *Group) WaitEmpty(ctx context.Context) error {
	return g.wait(ctx, "populated", 0)
}

// Freeze stops every process in the group and returns once the kernel
// reports the group frozen. Frozen processes can still be killed.
func (g *Group) Freeze(ctx context.Context) error {
	if err := g.write("cgroup.freeze", "1"); err != nil {
		return err
	}
	return g.wait(ctx, "frozen", 1)
}

// Thaw resumes a frozen group and returns once it is no longer frozen:
// at once unless a frozen parent keeps it frozen (the kernel clears its
// frozen state within the write).
func (g *Group) Thaw(ctx context.Context) error {
	if err := g.Resume(); err != nil {
		return err
	}
	return g.WaitThawed(ctx)
}

// WaitThawed returns once the group, resumed, is no longer frozen, or
// with ctx's error when ctx ends first.
func (g *Group) WaitThawed(ctx context.Context) error {
	return g.wait(ctx, "frozen", 0)
}

// Resume asks the kernel to thaw the group and returns without waiting:
// its processes run again at once unless a frozen parent holds them.
func (g *Group) Resume() error {
	return g.write("cgroup.freeze", "0")
}

// Destroy kills the group, waits until it is empty and removes it.
func (g *Group) Destroy(ctx context.Context) error {
	if err := g.Kill(); err != nil {
		return err
	}
	if err := g.WaitEmpty(ctx); err != nil {
		return fmt.Errorf("waiting for %s to empty: %w", g.Path(), err)
	}
	return g.Remove()
}

// Remove removes the empty group, and groups an app made below it, then
// closes it. A populated group stays open.
func (g *Group) Remove() error {
	err := withFD(g.s.dir, func(fd int) error { return removeDir(fd, g.name, maxDepth) })
	if err != nil {
		return fmt.Errorf("removing %s: %w", g.Path(), err)
	}
	return g.Close()
}

// maxDepth bounds the groups below a group that Remove descends into.
const maxDepth = 16

// removeDir removes the cgroup name in parent and, when it has children
// (EBUSY), those first.
func removeDir(parent int, name string, depth int) error {
	err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
	if err != unix.EBUSY || depth == 0 {
		return err
	}
	fd, oerr := unix.Openat(parent, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if oerr != nil {
		return err
	}
	dir := os.NewFile(uintptr(fd), name)
	defer dir.Close()
	children, oerr := subdirs(dir)
	if oerr != nil || len(children) == 0 {
		return err // populated, not parent
	}
	for _, c := range children {
		if err := withFD(dir, func(fd int) error { return removeDir(fd, c, depth-1) }); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	return unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
}

// wait returns once cgroup.events says key is want. The kernel reports
// every change of cgroup.events as a modification, which inotify passes
// on: no polling. A value already there is taken without an inotify
// instance: a thaw, whose frozen 0 the kernel writes within the write to
// cgroup.freeze, then costs one read.
func (g *Group) wait(ctx context.Context, key string, want int64) error {
	if v, err := g.event(key); err != nil || v == want {
		return err
	}
	in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("watching %s: %w", g.Path(), err)
	}
	f := os.NewFile(uintptr(in), "inotify") // on the poller: deadlines work
	// Closing an inotify instance waits for the kernel's SRCU grace
	// period, 15 ms and more: nobody needs to wait for it.
	defer func() { go f.Close() }()
	events := filepath.Join(g.Path(), "cgroup.events")
	if _, err := unix.InotifyAddWatch(in, events, unix.IN_MODIFY|unix.IN_DONT_FOLLOW); err != nil {
		return fmt.Errorf("watching %s: %w", events, err)
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 4096)
	// Each turn needs a change of the file; ctx bounds the turns.
	for {
		v, err := g.event(key)
		if err != nil {
			return err
		}
		if v == want {
			return nil
		}
		if _, err := f.Read(buf); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watching %s: %w", events, err)
		}
	}
}

// event reads a value of cgroup.events.
func (g *Group) event(key string) (int64, error) {
	return g.keyed("cgroup.events", key)
}

// keyed reads the value of key in a flat-keyed file ("key value" lines).
func (g *Group) keyed(file, key string) (int64, error) {
	data, err := g.read(file)
	if err != nil {
		return 0, err
	}
	v, err := keyedValue(data, key)
	if err != nil {
		return 0, fmt.Errorf("%s/%s: %w", g.Path(), file, err)
	}
	return v, nil
}

func keyedValue(data []byte, key string) (int64, error) {
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %q is not a number", key, v)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no %s line", key)
}

func (g *Group) read(file string) ([]byte, error) { return readAt(g.dir, g.Path(), file) }

func (g *Group) write(file, data string) error { return writeAt(g.dir, g.Path(), file, data) }
