package cgroup

import (
	"fmt"
	"os"

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
