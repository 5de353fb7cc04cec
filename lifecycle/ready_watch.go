package lifecycle

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	"github.com/dynapm/dynapm/sdnotify"
)

// The kinds of ready: a program tells itself: READY=1 on the NOTIFY_SOCKET
// it is given (notify), or a line of its output (log). The watch is set up
// before the program is spawned, since the socket's name goes into its
// environment and the tap onto its output pipe, and the start waits on its
// signal without polling.

// Bounds on what a program can make the daemon hold: the part of an output
// line matched, and the STATUS= text shown by dynapm status.
const (
	maxTapLine    = 4 << 10
	maxStatusText = 200
)

// readyWatch is one start's notify socket or output tap.
type readyWatch struct {
	// ready is closed once the program said it is ready.
	ready   chan struct{}
	awaited string // what is awaited, for a timeout's message

	notify *sdnotify.Listener // notify: the socket; nil for log
	tap    *lineTap           // log: the tap; nil for notify
	// status is the last STATUS= text (a string), for dynapm status.
	status atomic.Value
	// received is closed when the notify reader has ended.
	received chan struct{}
}

// newNotifyWatch opens a notify socket for one start.
func newNotifyWatch() (*readyWatch, error) {
	l, err := sdnotify.Listen()
	if err != nil {
		return nil, err
	}
	return &readyWatch{ready: make(chan struct{}), awaited: "READY=1 on NOTIFY_SOCKET", notify: l}, nil
}

// newLogWatch taps a start's output for a line re matches.
func newLogWatch(re *regexp.Regexp) *readyWatch {
	w := &readyWatch{ready: make(chan struct{}), awaited: fmt.Sprintf("output line matching %q", re.String())}
	w.tap = &lineTap{re: re, matched: w.ready}
	return w
}

// env is what the program's environment gets for the watch.
func (w *readyWatch) env() []string {
	if w == nil || w.notify == nil {
		return nil
	}
	return []string{"NOTIFY_SOCKET=" + w.notify.Socket()}
}

// tapFunc is the tap for the output pipe, or nil.
func (w *readyWatch) tapFunc() func([]byte) bool {
	if w == nil || w.tap == nil {
		return nil
	}
	return w.tap.write
}

// started begins reading the notify socket once the program runs as pid:
// a message counts only from the program or a process of its user (the
// kernel vouches for the sender; anyone can send to an abstract socket).
// MAINPID= and the other assignments are ignored: DynaPM watches the
// process it started.
func (w *readyWatch) started(pid int, log *slog.Logger) {
	if w == nil || w.notify == nil {
		return
	}
	w.received = make(chan struct{})
	go func() {
		defer close(w.received)
		var once sync.Once
		warned := false
		for {
			msg, err := w.notify.Receive()
			if err != nil {
				return // closed: the instance is over
			}
			if !w.trusted(msg, pid) {
				if !warned {
					log.Warn("notification ignored: its sender does not run as the app's program", "sender_pid", msg.PID, "sender_uid", msg.UID)
					warned = true
				}
				continue
			}
			if s, ok := msg.Fields["STATUS"]; ok {
				w.status.Store(cleanStatus(s))
			}
			if msg.Fields["READY"] == "1" {
				once.Do(func() { close(w.ready) })
			}
		}
	}()
}

// trusted reports whether msg comes from the program started as pid: from
// that process itself (the usual sender, known without a look at /proc),
// or from one of the same user.
func (w *readyWatch) trusted(msg sdnotify.Message, pid int) bool {
	if msg.PID == pid {
		return true
	}
	uid, err := procUID(pid)
	return err == nil && msg.UID == uid
}

// startOver is called once the start is ready or has failed: the tap stops
// looking at the output.
func (w *readyWatch) startOver() {
	if w != nil && w.tap != nil {
		w.tap.off.Store(true)
	}
}

// close ends the watch when the instance is over, and waits for its
// reader.
func (w *readyWatch) close() {
	if w == nil || w.notify == nil {
		w.startOver()
		return
	}
	w.notify.Close()
	if w.received != nil {
		<-w.received
	}
}

// statusText is the last STATUS= the program sent, or "".
func (w *readyWatch) statusText() string {
	if w == nil {
		return ""
	}
	s, _ := w.status.Load().(string)
	return s
}

// lineTap matches a program's output, line by line, as it passes into the
// log. It runs on the log's copy goroutine and holds at most maxTapLine
// bytes of a line: a longer line is matched on its beginning.
type lineTap struct {
	re      *regexp.Regexp
	matched chan struct{} // closed at the first match
	off     atomic.Bool   // the start is over: stop looking
	line    []byte
	long    bool // the line outgrew maxTapLine: its rest is skipped
}

// write takes the next piece of output and reports whether it wants more.
func (t *lineTap) write(p []byte) bool {
	if t.off.Load() {
		return false
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i]
		}
		if !t.long {
			room := maxTapLine - len(t.line)
			if len(part) > room {
				part, t.long = part[:room], true
			}
			t.line = append(t.line, part...)
		}
		if i < 0 {
			return true
		}
		p = p[i+1:]
		line := bytes.TrimSuffix(t.line, []byte("\r"))
		// The header the Manager writes before each start is not the
		// program's.
		if !bytes.HasPrefix(line, []byte(startHeader)) && t.re.Match(line) {
			close(t.matched)
			t.line = nil
			return false
		}
		t.line, t.long = t.line[:0], false
	}
	return true
}

// procUID is the real uid of process pid.
func procUID(pid int) (uint32, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			n, err := strconv.ParseUint(f[0], 10, 32)
			return uint32(n), err
		}
	}
	return 0, errors.New("no Uid in /proc/" + strconv.Itoa(pid) + "/status")
}

// cleanStatus makes a program's STATUS= text fit for a terminal and a
// table: printable characters only (no escape sequences), on one line, at
// most maxStatusText runes.
func cleanStatus(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		if unicode.IsSpace(r) {
			return ' '
		}
		return -1
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > maxStatusText {
		s = string(r[:maxStatusText-1]) + "…"
	}
	return s
}
