package cgroup

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxRead bounds a file read from a group; cgroup.procs of a large group
// is the longest.
const maxRead = 4 << 20

// withFD runs fn with f's descriptor, which stays open meanwhile: a
// concurrent Close cannot let the number name another file.
func withFD(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// openAt opens file in the directory dir (named dirPath in messages),
// never following a symlink.
func openAt(dir *os.File, dirPath, file string, flags int) (*os.File, error) {
	p := filepath.Join(dirPath, file)
	var fd int
	err := withFD(dir, func(dfd int) (err error) {
		fd, err = unix.Openat(dfd, file, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

func readAt(dir *os.File, dirPath, file string) ([]byte, error) {
	f, err := openAt(dir, dirPath, file, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRead+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRead {
		return nil, fmt.Errorf("%s: longer than %d bytes", f.Name(), maxRead)
	}
	return data, nil
}

func writeAt(dir *os.File, dirPath, file, data string) error {
	f, err := openAt(dir, dirPath, file, unix.O_WRONLY)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", data, f.Name(), err)
	}
	return nil
}

// subdirs names the directories in dir: in a cgroup, its child groups.
func subdirs(dir *os.File) ([]string, error) {
	d, err := openAt(dir, dir.Name(), ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
