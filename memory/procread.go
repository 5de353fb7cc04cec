package memory

import (
	"errors"
	"syscall"
)

// readProcFile reads a small /proc file with plain open, read and close,
// into buf while it fits (growing it otherwise), and returns the contents
// and the buffer to reuse. A check reads a few files per running app every
// interval; this skips the fstat, finalizer and poller registration of
// os.ReadFile, which cost more than the read itself.
func readProcFile(path string, buf []byte) (data, reuse []byte, err error) {
	fd, err := openRetry(path)
	if err != nil {
		return nil, buf, err
	}
	defer syscall.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, max(len(buf), 512))...)
		}
		m, err := syscall.Read(fd, buf[n:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, buf, err
		}
		if m == 0 {
			return buf[:n], buf, nil
		}
		n += m
	}
}

// openRetry opens path read-only, retrying when a signal interrupts.
func openRetry(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if !errors.Is(err, syscall.EINTR) {
			return fd, err
		}
	}
}
