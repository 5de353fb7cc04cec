package execdriver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// defaultPath is the search path used when the app's environment has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// programError says why an app's program cannot be run; it wraps
// exec.ErrNotFound, fs.ErrNotExist or fs.ErrPermission for errors.Is.
type programError struct {
	msg string
	err error
}

func (e *programError) Error() string { return e.msg }
func (e *programError) Unwrap() error { return e.err }

// FindProgram resolves an app's program as Start will: a name with a slash
// is taken relative to dir, any other is searched in the PATH of env (the
// default PATH when env has none), relative PATH entries taken from dir
// too. `dynapm check` calls it with the daemon's environment, so both say
// the same.
func FindProgram(name, dir string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		if err := checkExecutable(path); err != nil {
			return "", programErr(name, path, err)
		}
		return path, nil
	}
	search, ok := lookupEnv(env, "PATH")
	if !ok {
		search = defaultPath
	}
	for _, entry := range filepath.SplitList(search) {
		if entry == "" {
			entry = "."
		}
		if !filepath.IsAbs(entry) {
			entry = filepath.Join(dir, entry)
		}
		path := filepath.Join(entry, name)
		if checkExecutable(path) == nil {
			return path, nil
		}
	}
	return "", &programError{
		msg: fmt.Sprintf("program %q not found: no executable file of that name in PATH (%s)", name, search),
		err: exec.ErrNotFound,
	}
}

// programErr words what checkExecutable found wrong with path, the file
// program name resolved to.
func programErr(name, path string, err error) error {
	where := strconv.Quote(path)
	if where != name {
		where = fmt.Sprintf("%q (%s)", name, path)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &programError{msg: fmt.Sprintf("program %s not found: no such file", where), err: err}
	case errors.Is(err, errNotExecutable):
		return &programError{msg: fmt.Sprintf("program %s is not an executable file", where), err: fs.ErrPermission}
	}
	return &programError{msg: fmt.Sprintf("program %s: %v", where, err), err: err}
}

// errNotExecutable: a directory, or a file without an execute bit.
var errNotExecutable = fmt.Errorf("not an executable file: %w", fs.ErrPermission)

// checkExecutable returns nil when path is a regular file with an execute
// bit.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return errNotExecutable
	}
	return nil
}
