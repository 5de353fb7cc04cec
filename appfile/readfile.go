package appfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxFileSize bounds an app or settings file: no configuration needs
// more, and a larger one is a mistake (a log renamed .yaml, say).
const MaxFileSize = 1 << 20

// ReadFile reads a configuration file (an app file, the settings file).
// Unlike os.ReadFile it never blocks or runs unbounded: a FIFO, a device
// such as /dev/zero or a socket is refused (opened without waiting for a
// writer), and so is a file over MaxFileSize, each with an error saying so.
// A missing file's error is fs.ErrNotExist, and a directory's says it is one.
func ReadFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case fi.IsDir():
		return nil, fmt.Errorf("%s is a directory, not a file", path)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file (%s): expected a file of text", path, fi.Mode().Type())
	case fi.Size() > MaxFileSize:
		return nil, fmt.Errorf("%s is %d bytes: expected at most %d", path, fi.Size(), MaxFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, errors.New(path + " grew past " + fmt.Sprint(MaxFileSize) + " bytes while being read")
	}
	return data, nil
}
