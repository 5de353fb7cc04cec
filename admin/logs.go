package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Log tail bounds: how many lines a client may ask for, and how far back
// from the end of the log a tail reads at most.
const (
	defaultTailLines = 50
	maxTailLines     = 100_000
	maxTailBytes     = 16 << 20
)

// logs serves GET /v1/apps/NAME/logs?n=N&follow=1: the last N lines of the
// app's log and, when following, every line appended after them until the
// client goes away or the server shuts down. A rotated log is followed into
// its successor.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !appName.MatchString(name) {
		writeUnknown(w, name)
		return
	}
	n := defaultTailLines
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "n must be a number of lines ≥ 0")
			return
		}
		n = min(n, maxTailLines)
	}
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	path := filepath.Join(s.cfg.LogDir, name+".log")
	_, known := s.findApp(name)
	f, err := openLog(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !known:
		writeUnknown(w, name)
		return
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		writeError(w, http.StatusInternalServerError, "failed", err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	var off int64
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	if f != nil {
		var tail []byte
		if tail, off, err = tailLines(f, n); err != nil {
			s.cfg.Logger.Warn("reading app log", "app", name, "err", err)
			return
		}
		if _, err := w.Write(tail); err != nil {
			return
		}
	}
	if !follow {
		return
	}
	flush(w)
	fw := &follower{path: path, f: f, off: off, w: w}
	fw.run(r.Context(), s.cfg.FollowInterval)
	f = fw.f
}

// openLog opens an app's log for reading, never through a symlink: the
// daemon writes its logs itself, and a symlink in their place was planted
// to make it show another file.
func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}

// failureTailLines is how much of the log a failed start reports.
const failureTailLines = 10

// logTail returns the last lines of the app's log for an error report, ""
// when there is none.
func (s *Server) logTail(name string) string {
	f, err := openLog(filepath.Join(s.cfg.LogDir, name+".log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _, err := tailLines(f, failureTailLines)
	if err != nil {
		return ""
	}
	return string(b)
}

// tailLines returns the last n lines of f (reading at most maxTailBytes back
// from its end) and the offset just after them, where following goes on.
func tailLines(f *os.File, n int) ([]byte, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := st.Size()
	if n == 0 {
		return nil, size, nil
	}
	const chunk = 64 << 10
	var buf []byte
	pos := size
	for pos > 0 && size-pos < maxTailBytes {
		step := min(int64(chunk), pos)
		pos -= step
		b := make([]byte, step)
		if _, err := f.ReadAt(b, pos); err != nil && err != io.EOF {
			return nil, 0, err
		}
		buf = append(b, buf...)
		// One more newline than lines wanted: the one ending the line
		// before the first line kept (a final newline ends the last line).
		if bytes.Count(bytes.TrimSuffix(buf, []byte("\n")), []byte("\n")) >= n {
			break
		}
	}
	body := bytes.TrimSuffix(buf, []byte("\n"))
	for i := 0; i < n; i++ {
		j := bytes.LastIndexByte(body, '\n')
		if j < 0 {
			return buf, size, nil
		}
		if i == n-1 {
			return buf[j+1:], size, nil
		}
		body = body[:j]
	}
	return buf, size, nil
}

// follower copies what is appended to a log file to an HTTP client.
type follower struct {
	path string
	f    *os.File // nil while the file does not exist
	off  int64
	w    http.ResponseWriter
}

// run polls the log every interval until ctx ends or the client is gone.
func (fw *follower) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := fw.poll(); err != nil {
			return
		}
	}
}

// poll copies new bytes; when the path now names another file (rotation),
// it finishes the old file and continues from the start of the new one.
func (fw *follower) poll() error {
	st, err := os.Lstat(fw.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if fw.f != nil {
		old, err := fw.f.Stat()
		if err != nil {
			return err
		}
		if st != nil && !os.SameFile(old, st) {
			if err := fw.copyNew(); err != nil {
				return err
			}
			fw.f.Close()
			fw.f, fw.off = nil, 0
		} else if old.Size() < fw.off {
			fw.off = 0 // truncated in place
		}
	}
	if fw.f == nil {
		if st == nil {
			return nil
		}
		if fw.f, err = openLog(fw.path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
	}
	return fw.copyNew()
}

// copyNew sends the bytes from the follow offset to the current end.
func (fw *follower) copyNew() error {
	n, err := io.Copy(fw.w, io.NewSectionReader(fw.f, fw.off, maxTailBytes<<6))
	fw.off += n
	if err != nil {
		return err
	}
	if n > 0 {
		flush(fw.w)
	}
	return nil
}

func flush(w http.ResponseWriter) {
	_ = http.NewResponseController(w).Flush()
}
