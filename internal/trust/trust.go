// Package trust decides whether the daemon may believe what a file or
// directory says, the way sshd's StrictModes does: whoever can change it,
// or replace it, controls what the daemon does. A path is trusted when it
// and every directory on the way to it (every symlink followed step by
// step, as the kernel does) are owned by root or the daemon's own user and
// are not writable by group or others. A sticky directory owned by one of
// them (/tmp) may be on the way: there nobody renames or removes what they
// do not own, so what lies below it is judged by its own owner.
package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// maxLinks bounds the symlinks one path may go through, as the kernel's
// ELOOP does.
const maxLinks = 40

// Checker judges paths for a daemon running as UID: root and UID are
// trusted, every other user is not.
type Checker struct {
	// UID is the daemon's effective uid.
	UID uint32
	// Private are directories no configuration file may resolve into (the
	// state directory): what the daemon writes there, an app's log say, is
	// not configuration, whoever owns it.
	Private []string
	// dirs, when not nil, are the directories already looked at (see
	// Batch), by path.
	dirs map[string]step
	// app, when set (AppDir), is the user an app's program runs as, also
	// trusted with that app's own directory.
	app *uint32
}

// Batch returns a Checker for checks made together, one after another
// (every file of a reload): it looks at each directory on the way once,
// not once per file, so that judging 10,000 files in one directory costs
// about one lstat each. A change to a directory made during the batch is
// seen by the next one. Not for concurrent use.
func (c Checker) Batch() Checker {
	c.dirs = map[string]step{}
	return c
}

// New returns the Checker of this process, with private as its Private
// directories (symlinks in them resolved, so that they compare with the
// resolved paths of files).
func New(private ...string) Checker {
	c := Checker{UID: uint32(os.Geteuid())}
	for _, p := range private {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		c.Private = append(c.Private, p)
	}
	return c
}

// Error is a path the daemon refuses to trust, why, and how to fix it.
type Error struct {
	// Subject names what is at fault and what it is to the daemon
	// ("apps directory /srv/apps.d", "/srv, on the way to ...").
	Subject string
	// Path is the file or directory at fault.
	Path    string
	Problem string
	// Fix is the command that fixes it; "" when there is none to give.
	Fix string
}

func (e *Error) Error() string {
	if e.Fix == "" {
		return e.Subject + " " + e.Problem
	}
	return e.Subject + " " + e.Problem + "; fix it with: " + e.Fix
}

// Dir checks a directory the daemon trusts (the apps directory, the state
// directory; what names it in errors): it and every directory on the way
// to it are owned by root or the daemon's user and not writable by group
// or others; sticky or not, in its own case, since anyone could add to it.
func (c Checker) Dir(path, what string) error {
	return c.strict(path, what, true)
}

// AppDir is Dir for a directory that only one app relies on (the
// directory of its unix: upstream socket): uid, the user its program runs
// as, may own it too, as the program changing what it serves on is no
// attack on it. A directory that does not exist yet is judged by the
// nearest one above it that does (only those it trusts can make it there),
// provided nothing, not even a dangling symlink, stands where the first
// missing one would be. A directory in a Private one is refused.
func (c Checker) AppDir(path, what string, uid uint32) error {
	c.app = &uid
	path = filepath.Clean(path)
	p := path
	err := c.strict(p, what, true)
	for errors.Is(err, fs.ErrNotExist) && p != "/" {
		if _, lerr := os.Lstat(p); lerr == nil {
			// It is there, yet does not resolve: a symlink to nothing.
			return &Error{Subject: what + " " + path, Path: p,
				Problem: fmt.Sprintf("does not exist, and %s is a symlink to nothing, which whoever may make its target would choose", p)}
		}
		p = filepath.Dir(p)
		err = c.strict(p, fmt.Sprintf("%s %s does not exist yet; the directory above it", what, path), true)
	}
	if err != nil {
		return err
	}
	// Nor in the state directory: the daemon's own socket is there, and
	// the app's clients would be its clients.
	resolved, _, err := c.walk(p)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", what, path, err)
	}
	return c.private(path, filepath.Join(resolved, strings.TrimPrefix(path, p)), what+" "+path)
}

// File is Dir for a file the daemon trusts (the settings file).
func (c Checker) File(path, what string) error {
	return c.strict(path, what, false)
}

func (c Checker) strict(path, what string, dir bool) error {
	resolved, steps, err := c.walk(path)
	if err != nil {
		return fmt.Errorf("checking %s %s: %w", what, path, err)
	}
	subject := what + " " + path
	for _, s := range steps {
		switch {
		case s.final && dir && !s.mode.IsDir():
			return &Error{Subject: subject, Path: path, Problem: "is not a directory"}
		case s.final && !dir && !s.mode.IsRegular():
			return &Error{Subject: subject, Path: path, Problem: "is not a regular file"}
		}
		if err := c.writable(s, subject); err != nil {
			return err
		}
		if !s.trusted(c) {
			return c.ownerError(s, subject)
		}
	}
	if !dir {
		return c.private(path, resolved, subject)
	}
	return nil
}

// Owner is who controls a file.
type Owner struct {
	// UID is the user who can change the file: the one user other than
	// root and the daemon's that owns it, a symlink on the way to it or a
	// directory on the way to it; else the file's owner.
	UID uint32
	// Via is the path that makes the file UID's when the file itself is
	// not (a symlink UID owns, a directory of UID's its target lies in);
	// "" when it is the file itself.
	Via string
	// Resolved is the file's path with every symlink resolved.
	Resolved string
}

// AppFile judges an app file (named "app file" in errors, whose callers
// name the file). The file and its resolved target are judged: what a user
// other than root and the daemon's own owns, on the way or at the end,
// makes the file that user's (the returned Owner), since that user can
// change what it says. It is an error for a file, or any directory on the
// way, to be writable by group or others (all of them could change it),
// for two such users to control it, and for the file to resolve into a
// Private directory.
func (c Checker) AppFile(path string) (Owner, error) {
	resolved, steps, err := c.walk(path)
	if err != nil {
		return Owner{}, fmt.Errorf("checking the owner: %w", err)
	}
	o := Owner{Resolved: resolved}
	var other *step
	for i := range steps {
		s := &steps[i]
		if err := c.writable(*s, "app file"); err != nil {
			return o, err
		}
		if s.final {
			o.UID = s.uid
		}
		if s.trusted(c) {
			continue
		}
		// Owned by another user: the file is that user's.
		switch {
		case other == nil:
			other = s
		case other.uid != s.uid:
			return o, &Error{Subject: "app file", Path: path, Problem: fmt.Sprintf(
				"can be changed by two users: %s, who owns %s, and %s, who owns %s",
				UserName(other.uid), other.path, UserName(s.uid), s.path)}
		}
	}
	if other != nil {
		o.UID = other.uid
		if !other.final {
			o.Via = other.path
		}
	}
	return o, c.private(path, resolved, "app file")
}

// private refuses a file that resolves into one of c.Private.
func (c Checker) private(path, resolved, subject string) error {
	for _, p := range c.Private {
		if resolved == p || strings.HasPrefix(resolved, p+"/") {
			problem := fmt.Sprintf("is inside the state directory %s, where dynapm writes", p)
			if resolved != path {
				problem = fmt.Sprintf("resolves to %s, inside the state directory %s, where dynapm writes", resolved, p)
			}
			return &Error{Subject: subject, Path: path, Problem: problem}
		}
	}
	return nil
}

// writable refuses a step that group or others may write to: a symlink
// (whose mode means nothing) and a sticky directory on the way excepted.
func (c Checker) writable(s step, subject string) error {
	perm := s.mode.Perm()
	if perm&0o022 == 0 || s.mode&fs.ModeSymlink != 0 || (!s.final && s.mode&fs.ModeSticky != 0) {
		return nil
	}
	if !s.final {
		subject = s.describe(subject)
	}
	return &Error{Subject: subject, Path: s.path,
		Problem: fmt.Sprintf("is writable by group or others (mode %#o)", perm), Fix: "chmod go-w " + s.path}
}

func (c Checker) ownerError(s step, subject string) error {
	if !s.final {
		subject = s.describe(subject)
	}
	chown := "chown "
	if s.mode&fs.ModeSymlink != 0 {
		chown = "chown -h "
	}
	trusted, to := "root", "root"
	if c.UID != 0 {
		trusted = "root or " + UserName(c.UID) + ", whom dynapm runs as"
		to = userArg(c.UID)
	}
	if c.app != nil && *c.app != 0 && *c.app != c.UID {
		trusted = "root or " + UserName(*c.app) + ", whom the app runs as"
		if c.UID != 0 {
			trusted = "root, " + UserName(c.UID) + " (whom dynapm runs as) or " + UserName(*c.app) + " (whom the app runs as)"
		}
		if s.final {
			// The app's own directory; the ones above stay the system's.
			to = userArg(*c.app)
		}
	}
	return &Error{Subject: subject, Path: s.path,
		Problem: fmt.Sprintf("is owned by %s, not %s", UserName(s.uid), trusted), Fix: chown + to + " " + s.path}
}

// userArg is how chown names uid: its user name, or the number.
func userArg(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// step is one thing a path goes through: a directory on the way, a
// symlink followed, or what the path names in the end (final).
type step struct {
	path  string
	uid   uint32
	mode  fs.FileMode
	final bool
}

func (s step) trusted(c Checker) bool {
	return s.uid == 0 || s.uid == c.UID || c.app != nil && s.uid == *c.app
}

// describe names a step that is not final in an error about subject.
func (s step) describe(subject string) string {
	if s.mode&fs.ModeSymlink != 0 {
		return fmt.Sprintf("%s, a symlink on the way to the %s,", s.path, subject)
	}
	return fmt.Sprintf("%s, on the way to the %s,", s.path, subject)
}

// walk resolves path as the kernel does, one component at a time, and
// returns the resolved path and every directory it went through, every
// symlink it followed and, last, what path names (lstat of each: nothing
// is judged through a symlink).
func (c Checker) walk(path string) (string, []step, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", nil, err
	}
	var steps []step
	add := func(p string, final bool) (fs.FileMode, error) {
		if s, ok := c.dirs[p]; ok {
			s.final = final
			steps = append(steps, s)
			return s.mode, nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return 0, err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, fmt.Errorf("%s: no owner to check", p)
		}
		s := step{path: p, uid: st.Uid, mode: fi.Mode(), final: final}
		steps = append(steps, s)
		if c.dirs != nil && fi.IsDir() {
			s.final = false
			c.dirs[p] = s
		}
		return fi.Mode(), nil
	}
	if _, err := add("/", false); err != nil {
		return "", nil, err
	}
	resolved := "/"
	rest := components(abs)
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case ".":
			continue
		case "..":
			// Every directory above resolved is judged already.
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, name)
		mode, err := add(next, false)
		if err != nil {
			return "", nil, err
		}
		if mode&fs.ModeSymlink != 0 {
			if links++; links > maxLinks {
				return "", nil, &fs.PathError{Op: "resolve", Path: abs, Err: syscall.ELOOP}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", nil, err
			}
			if filepath.IsAbs(target) {
				resolved = "/"
			}
			rest = append(components(target), rest...)
			continue
		}
		if len(rest) > 0 && !mode.IsDir() {
			return "", nil, &fs.PathError{Op: "resolve", Path: next, Err: syscall.ENOTDIR}
		}
		resolved = next
	}
	// What path names is the last thing resolved: a step already unless
	// the path ended in "..".
	last := len(steps) - 1
	if steps[last].path == resolved && steps[last].mode&fs.ModeSymlink == 0 {
		steps[last].final = true
	} else if _, err := add(resolved, true); err != nil {
		return "", nil, err
	}
	return resolved, steps, nil
}

func components(p string) []string {
	var parts []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			parts = append(parts, c)
		}
	}
	return parts
}

// UserName is "NAME (uid N)", or "uid N" for a uid the password database
// does not know.
func UserName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("%s (uid %s)", u.Username, id)
	}
	return "uid " + id
}
