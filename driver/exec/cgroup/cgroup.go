// Package cgroup contains each app instance and cron job in a cgroup v2
// group of its own, under a subtree the daemon owns. A program started
// with the group's descriptor (SysProcAttr.UseCgroupFD) is born inside
// it, its setsid and double-forked descendants stay inside it, and it is
// stopped when the group is empty.
//
// Where cgroup2 is missing, not writable or not trusted, Open returns an
// error wrapping ErrUnavailable and the caller contains programs by
// process group instead.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	// ErrUnavailable: no usable cgroup2 subtree; contain by process group.
	ErrUnavailable = errors.New("cgroup v2 unavailable")
	// ErrNoMemory: the memory controller is not enabled for the groups.
	ErrNoMemory = errors.New("memory controller not enabled")
)

// DaemonLeaf is the child of a delegated cgroup the daemon moves itself
// into: once controllers are enabled for children, cgroup v2 lets only
// leaves hold processes, so app groups are its siblings. Its '.' keeps it
// apart from every group name.
const DaemonLeaf = "dynapm.daemon"

// DefaultName is the subtree made in the cgroup2 mount when Config.Name
// is empty.
const DefaultName = "dynapm"

// nameRule is an app name, optionally followed by '@' and an instance or
// job name. It has no '/' or '.', so a name can neither leave its parent
// nor collide with an interface file such as cgroup.procs.
const nameRule = "[a-z0-9][a-z0-9_-]*(@[a-z0-9_-]+)?"

var nameRE = regexp.MustCompile("^" + nameRule + "$")

func validName(name string) error {
	if len(name) > 255 || !nameRE.MatchString(name) {
		return fmt.Errorf("cgroup name %q: want %s, at most 255 bytes", name, nameRule)
	}
	return nil
}

// Config says where the subtree is.
type Config struct {
	// Name is the directory made in the cgroup2 mount's root when the
	// daemon's own cgroup is not delegated to it; DefaultName when empty.
	// Daemons with different state directories need different names.
	Name string

	procRoot string // "/proc" when empty; tests point it at fake files
}

// Subtree is the cgroup the daemon owns; its children are the groups.
// Its methods are safe for concurrent use.
type Subtree struct {
	dir       *os.File // O_PATH descriptor of the subtree's directory
	path      string   // the directory, for messages and inotify
	cgPath    string   // the cgroup as /proc/PID/cgroup names it
	procRoot  string
	delegated bool
	memErr    error
}

// mount is the cgroup2 mount: its mount point and the cgroup it shows.
type mount struct{ point, root string }

// Open finds or makes the subtree. When systemd delegated the daemon's
// own cgroup (Delegate=yes), the daemon moves itself into DaemonLeaf and
// the subtree is that cgroup; otherwise it is cfg.Name in the cgroup2
// mount's root. It enables the memory controller for the groups where the
// parent offers it (see Memory).
func Open(cfg Config) (*Subtree, error) {
	name := cfg.Name
	if name == "" {
		name = DefaultName
	}
	if err := validName(name); err != nil {
		return nil, err
	}
	proc := cfg.procRoot
	if proc == "" {
		proc = "/proc"
	}
	mnt, err := findMount(filepath.Join(proc, "self/mountinfo"))
	if err != nil {
		return nil, err
	}
	own, err := ownCgroup(filepath.Join(proc, "self/cgroup"))
	if err != nil {
		return nil, err
	}
	rel, delegated := delegatedDir(mnt, own)
	if !delegated {
		rel = "/" + name
	}
	s, err := openSubtree(mnt, rel, !delegated)
	if err != nil {
		return nil, err
	}
	s.procRoot, s.delegated = proc, delegated
	if delegated {
		if err := s.enterLeaf(); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.memErr = s.enableMemory()
	return s, nil
}

// delegatedDir returns the daemon's own cgroup, relative to the mount,
// when systemd delegated it, which it marks with a trusted.delegate
// (system manager) or user.delegate (user manager) xattr. Ownership alone
// proves nothing: a user's manager owns every unit of the user's, and a
// unit it did not delegate is not the daemon's to divide.
func delegatedDir(mnt mount, own string) (string, bool) {
	rel, ok := under(mnt.root, own)
	if !ok || rel == "/" {
		return "", false
	}
	rel = path.Clean(rel)
	if path.Base(rel) == DaemonLeaf {
		rel = path.Dir(rel) // a daemon that entered its leaf before
	}
	if rel == "/" {
		return "", false
	}
	dir := filepath.Join(mnt.point, rel)
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		buf := make([]byte, 8)
		if n, err := unix.Lgetxattr(dir, attr, buf); err == nil && string(buf[:n]) == "1" {
			return rel, true
		}
	}
	return "", false
}

// under returns p relative to root ("/" for root itself), both absolute
// cgroup paths, and whether p lies under root.
func under(root, p string) (string, bool) {
	if root == "/" {
		return p, true
	}
	if p == root {
		return "/", true
	}
	rest, ok := strings.CutPrefix(p, root+"/")
	return "/" + rest, ok
}

// openSubtree opens mnt.point+rel, making it first when create, without
// following a symlink or leaving the mount, and checks that it is a cgroup2
// directory only the daemon can write, below directories only the daemon
// or root can write.
func openSubtree(mnt mount, rel string, create bool) (*Subtree, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS}
	mfd, err := unix.Openat2(unix.AT_FDCWD, mnt.point, &how)
	if err != nil {
		return nil, fmt.Errorf("%w: opening %s: %w", ErrUnavailable, mnt.point, err)
	}
	defer unix.Close(mfd)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(mfd, &fs); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, mnt.point, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("%w: %s is not a cgroup2 filesystem", ErrUnavailable, mnt.point)
	}
	p := filepath.Join(mnt.point, rel)
	inner := strings.TrimPrefix(rel, "/")
	if create {
		if err := unix.Mkdirat(mfd, inner, 0o755); err != nil && err != unix.EEXIST {
			return nil, fmt.Errorf("%w: creating %s: %w", ErrUnavailable, p, err)
		}
	}
	how.Resolve |= unix.RESOLVE_BENEATH | unix.RESOLVE_NO_XDEV
	fd, err := unix.Openat2(mfd, inner, &how)
	if err != nil {
		return nil, fmt.Errorf("%w: opening %s: %w", ErrUnavailable, p, err)
	}
	s := &Subtree{dir: os.NewFile(uintptr(fd), p), path: p, cgPath: path.Join(mnt.root, rel)}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	if err == nil {
		err = trusted(p, &st, false)
	}
	// Whoever can write a directory above could rename the subtree away
	// and put one of their own in its place.
	for d := path.Dir(rel); err == nil; d = path.Dir(d) {
		if err = unix.Fstatat(mfd, "."+d, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			err = trusted(filepath.Join(mnt.point, d), &st, true)
		}
		if d == "/" {
			break
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return s, nil
}

// trusted refuses a directory owned by another user (root allowed above
// the subtree) or writable by group or others.
func trusted(dir string, st *unix.Stat_t, rootOK bool) error {
	euid := os.Geteuid()
	if int(st.Uid) != euid && !(rootOK && st.Uid == 0) {
		return fmt.Errorf("%s is owned by uid %d, not %d", dir, st.Uid, euid)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %#o)", dir, st.Mode&0o777)
	}
	return nil
}

// enterLeaf moves the daemon into DaemonLeaf.
func (s *Subtree) enterLeaf() error {
	err := withFD(s.dir, func(fd int) error { return unix.Mkdirat(fd, DaemonLeaf, 0o755) })
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: creating %s: %w", ErrUnavailable, filepath.Join(s.path, DaemonLeaf), err)
	}
	if err := writeAt(s.dir, s.path, DaemonLeaf+"/cgroup.procs", fmt.Sprint(os.Getpid())); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// enableMemory gives the groups the memory controller when the subtree
// has it; the error says why not.
func (s *Subtree) enableMemory() error {
	ctl, err := readAt(s.dir, s.path, "cgroup.controllers")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoMemory, err)
	}
	if !slices.Contains(strings.Fields(string(ctl)), "memory") {
		return fmt.Errorf("%w: %s/cgroup.controllers lists no memory (bound to cgroup v1, or not enabled above)", ErrNoMemory, s.path)
	}
	sub, err := readAt(s.dir, s.path, "cgroup.subtree_control")
	if err == nil && slices.Contains(strings.Fields(string(sub)), "memory") {
		return nil
	}
	if err := writeAt(s.dir, s.path, "cgroup.subtree_control", "+memory"); err != nil {
		return fmt.Errorf("%w: %w", ErrNoMemory, err)
	}
	return nil
}

// Path is the subtree's directory.
func (s *Subtree) Path() string { return s.path }

// Delegated reports whether the subtree is the daemon's own cgroup,
// delegated by systemd.
func (s *Subtree) Delegated() bool { return s.delegated }

// Memory is nil when the groups have the memory controller, else an
// error wrapping ErrNoMemory that says why.
func (s *Subtree) Memory() error { return s.memErr }

// Close releases the subtree's descriptor; Remove of its groups fails
// after it. The directory and its groups stay: a later daemon finds them
// with List.
func (s *Subtree) Close() error { return s.dir.Close() }

// Remove closes the subtree and, unless it is the daemon's delegated
// cgroup, removes its directory, which must hold no group any more: a
// daemon that shut down cleanly leaves nothing in the cgroup2 mount.
func (s *Subtree) Remove() error {
	err := s.Close()
	if s.delegated {
		return err
	}
	if rerr := unix.Rmdir(s.path); rerr != nil {
		return errors.Join(err, fmt.Errorf("removing %s: %w", s.path, rerr))
	}
	return err
}

// Create makes a new group. It fails (fs.ErrExist) when one of that name
// exists, so a program never joins processes it does not know.
func (s *Subtree) Create(name string) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	err := withFD(s.dir, func(fd int) error { return unix.Mkdirat(fd, name, 0o755) })
	if err != nil {
		return nil, fmt.Errorf("creating cgroup %s: %w", filepath.Join(s.path, name), err)
	}
	return s.open(name)
}

// Open opens an existing group, such as one List found.
func (s *Subtree) Open(name string) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	return s.open(name)
}

func (s *Subtree) open(name string) (*Group, error) {
	p := filepath.Join(s.path, name)
	var g *Group
	err := withFD(s.dir, func(dfd int) error {
		fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return err
		}
		if err := trusted(p, &st, false); err != nil {
			unix.Close(fd)
			return err
		}
		g = &Group{s: s, name: name, dir: os.NewFile(uintptr(fd), p)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening cgroup %s: %w", p, err)
	}
	return g, nil
}

// List names the groups in the subtree, sorted: at start-up, those a dead
// daemon left. Membership of a group is the proof its processes are
// DynaPM's; no file in the state directory is needed or trusted.
func (s *Subtree) List() ([]string, error) {
	names, err := subdirs(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", s.path, err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return validName(n) != nil })
	slices.Sort(names)
	return names, nil
}

// findMount returns the first cgroup2 mount in a mountinfo file.
func findMount(file string) (mount, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return mount{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for line := range strings.Lines(string(data)) {
		// ID parent major:minor root mountpoint options [optional...] - type source options
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep >= 6 && sep+1 < len(f) && f[sep+1] == "cgroup2" {
			return mount{root: unescape(f[3]), point: unescape(f[4])}, nil
		}
	}
	return mount{}, fmt.Errorf("%w: %s lists no cgroup2 mount", ErrUnavailable, file)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return s[0] <= '3'
}

// ownCgroup returns the cgroup v2 path in a /proc/PID/cgroup file.
func ownCgroup(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if p, ok := v2Path(data); ok {
		return p, nil
	}
	return "", fmt.Errorf("%w: %s has no cgroup v2 line (0::)", ErrUnavailable, file)
}

// v2Path returns the path on the "0::" line of a /proc/PID/cgroup file.
func v2Path(data []byte) (string, bool) {
	for line := range strings.Lines(string(data)) {
		if p, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "0::"); ok && strings.HasPrefix(p, "/") {
			return p, true
		}
	}
	return "", false
}
