package spawner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ErrClosed is what Spawn returns once the helper is gone (closed, or it
// died): the caller starts the program itself.
var ErrClosed = errors.New("spawner: helper not running")

// ErrTraced is what a Request with ListenPID fails with when the program
// started but its LISTEN_PID could not be set: it was killed before it
// ran, and may be started another way.
var ErrTraced = errors.New("spawner: setting LISTEN_PID failed")

// ErrRefused is what Spawn returns for a request the helper cannot take
// (more descriptors than one message carries, a request too large):
// nothing was sent, and the caller may start the program itself.
var ErrRefused = errors.New("spawner: request refused")

// lostPoll is how often a program whose helper died is checked for.
const lostPoll = 100 * time.Millisecond

// Client is the daemon's end: it sends requests to the helper and learns
// the pids and exit statuses of the programs it started.
//
// Two socket pairs: requests and their answers go over ctl with plain
// blocking system calls, so that a start costs no goroutine hand-over or
// netpoller wake-up on either side (the caller's thread and the helper's
// block in the kernel and are woken by it); exits come over events, read
// by a goroutine.
type Client struct {
	cmd    *exec.Cmd
	ctl    int // blocking SOCK_SEQPACKET, used under spawnMu
	events *net.UnixConn

	// spawnMu makes one request at a time on ctl.
	spawnMu sync.Mutex

	// mu guards the fields below.
	mu       sync.Mutex
	children map[int]*Child
	// early holds exits that came before Spawn registered the pid.
	early map[int]error
	// lost: the events reader has ended, the children are watched
	// without the helper.
	lost bool
	done chan struct{} // closed when the events reader has ended
	wg   sync.WaitGroup
}

// Child is one program the helper started.
type Child struct {
	// Pid is the program's pid, also its process group id.
	Pid  int
	done chan struct{}
	err  error
}

// Wait blocks until the program has exited and returns its status as
// exec.Cmd.Wait words it: nil for exit status 0, else an *ExitError
// ("exit status 3", "signal: killed").
func (ch *Child) Wait() error {
	<-ch.done
	return ch.err
}

// Start runs the helper (exe with HelperArg, in a process group of its
// own so that a terminal's Ctrl-C does not reach it) and returns the
// Client. The helper's descriptor table holds its standard descriptors and
// the two sockets: Go opens every other descriptor close-on-exec.
func Start(exe string) (*Client, error) {
	ctl, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("starting spawner: %w", err)
	}
	ev, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		syscall.Close(ctl[0])
		syscall.Close(ctl[1])
		return nil, fmt.Errorf("starting spawner: %w", err)
	}
	theirCtl := os.NewFile(uintptr(ctl[1]), "spawner-ctl")
	theirEv := os.NewFile(uintptr(ev[1]), "spawner-events")
	defer theirCtl.Close()
	defer theirEv.Close()
	mine := os.NewFile(uintptr(ev[0]), "spawner-events")
	fc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		syscall.Close(ctl[0])
		return nil, fmt.Errorf("starting spawner: %w", err)
	}
	events := fc.(*net.UnixConn)
	cmd := exec.Command(exe, HelperArg)
	cmd.Args[0] = "dynapm-spawner"                 // what ps shows
	cmd.ExtraFiles = []*os.File{theirCtl, theirEv} // fds 3 and 4
	cmd.Dir = "/"
	// A race-detector build sleeps a second before it exits, unless told
	// not to; other builds ignore the variable.
	cmd.Env = []string{"GORACE=atexit_sleep_ms=0"}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		syscall.Close(ctl[0])
		events.Close()
		return nil, fmt.Errorf("starting spawner: %w", err)
	}
	c := &Client{
		cmd:      cmd,
		ctl:      ctl[0],
		events:   events,
		children: make(map[int]*Child),
		early:    make(map[int]error),
		done:     make(chan struct{}),
	}
	go c.read()
	return c, nil
}

// Pid is the helper's pid.
func (c *Client) Pid() int { return c.cmd.Process.Pid }

// Spawn asks the helper to start req with stdout and stderr going to out
// (nil: /dev/null) and returns once the program runs (its exec
// succeeded). An error that wraps ErrClosed means the helper is gone; any
// other is the fork or exec's, worded as exec.Cmd.Start words it.
func (c *Client) Spawn(req Request, out *os.File) (*Child, error) {
	return c.SpawnIn(req, out, -1)
}

// SpawnIn is Spawn with the program born in the cgroup whose directory
// descriptor is cgroupFD (as SysProcAttr.UseCgroupFD), unless it is -1.
func (c *Client) SpawnIn(req Request, out *os.File, cgroupFD int) (*Child, error) {
	return c.SpawnFiles(req, []*os.File{nil, out, out}, cgroupFD)
}

// SpawnFiles is SpawnIn with files as the program's descriptors 0, 1,
// 2, ... (nil: /dev/null), as exec.Cmd's Stdin, Stdout, Stderr and
// ExtraFiles; req.Fds is set from them.
func (c *Client) SpawnFiles(req Request, files []*os.File, cgroupFD int) (*Child, error) {
	req.Cgroup = cgroupFD >= 0
	var fds []int
	req.Fds = make([]int, len(files))
	for i, f := range files {
		req.Fds[i] = -1
		if f == nil {
			continue
		}
		fd := int(f.Fd())
		req.Fds[i] = slices.Index(fds, fd)
		if req.Fds[i] < 0 {
			req.Fds[i] = len(fds)
			fds = append(fds, fd)
		}
	}
	if req.Cgroup {
		fds = append(fds, cgroupFD)
	}
	if len(fds) > maxFiles {
		return nil, fmt.Errorf("spawning %s: %w: %d descriptors, at most %d", req.Path, ErrRefused, len(fds), maxFiles)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("spawning %s: %w: %w", req.Path, ErrRefused, err)
	}
	if len(b) > maxMessage {
		return nil, fmt.Errorf("spawning %s: %w: request of %d bytes (environment too large)", req.Path, ErrRefused, len(b))
	}
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	c.spawnMu.Lock()
	defer c.spawnMu.Unlock()
	// Once the helper is gone (or Close closed ctl), the send fails.
	if err := sendmsg(c.ctl, b, oob); err != nil {
		return nil, fmt.Errorf("spawning %s: %w (%v)", req.Path, ErrClosed, err)
	}
	buf := make([]byte, 4096)
	n, err := recv(c.ctl, buf)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("spawning %s: %w", req.Path, ErrClosed)
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return nil, fmt.Errorf("spawning %s: bad answer from the helper: %w", req.Path, err)
	}
	switch {
	case m.Type == "started":
		ch := &Child{Pid: m.Pid, done: make(chan struct{})}
		c.mu.Lock()
		defer c.mu.Unlock()
		switch err, early := c.early[m.Pid]; {
		case early:
			delete(c.early, m.Pid)
			ch.err = err
			close(ch.done)
		case c.lost:
			// The helper died right after answering: lost has swept
			// the children already.
			c.wg.Add(1)
			go c.watchLost(ch)
		default:
			c.children[m.Pid] = ch
		}
		return ch, nil
	case m.Traced:
		return nil, fmt.Errorf("spawning %s: %w: %s", req.Path, ErrTraced, m.Error)
	case m.Errno != 0:
		// As os.StartProcess reports it, so that callers see the usual
		// fs.ErrNotExist, fs.ErrPermission...
		return nil, &fs.PathError{Op: "fork/exec", Path: req.Path, Err: syscall.Errno(m.Errno)}
	}
	return nil, fmt.Errorf("spawning %s: %s", req.Path, m.Error)
}

// sendmsg sends one message on a blocking socket.
func sendmsg(fd int, b, oob []byte) error {
	for {
		err := syscall.Sendmsg(fd, b, oob, nil, 0)
		if err != syscall.EINTR {
			return err
		}
	}
}

// recv reads one message from a blocking socket.
func recv(fd int, buf []byte) (int, error) {
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// read takes the exits the helper reports until it is gone.
func (c *Client) read() {
	defer close(c.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := c.events.Read(buf)
		if err != nil || n == 0 {
			break
		}
		var m message
		if json.Unmarshal(buf[:n], &m) != nil || m.Type != "exited" {
			continue
		}
		err = exitError(m)
		c.mu.Lock()
		ch := c.children[m.Pid]
		if ch == nil {
			c.early[m.Pid] = err // Spawn has yet to register it
		}
		delete(c.children, m.Pid)
		c.mu.Unlock()
		if ch != nil {
			ch.err = err
			close(ch.done)
		}
	}
	c.loseHelper()
}

// loseHelper handles the helper's end: its programs, now children of
// init, are watched until they are gone; their exit status is unknown.
func (c *Client) loseHelper() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lost = true
	for pid, ch := range c.children {
		delete(c.children, pid)
		c.wg.Add(1)
		go c.watchLost(ch)
	}
}

// watchLost waits until ch's process is gone.
func (c *Client) watchLost(ch *Child) {
	defer c.wg.Done()
	t := time.NewTicker(lostPoll)
	defer t.Stop()
	for alive(ch.Pid) {
		<-t.C
	}
	ch.err = errors.New("exit status unknown: the spawner helper ended before the program")
	close(ch.done)
}

// alive reports whether pid is a process that has not ended: zombies
// count as ended, since init may be slow to reap them (or, in some
// containers, never does).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc: trust kill
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// ExitError is a program's end other than exit status 0, as the helper
// reported it: the counterpart of exec.ExitError, with the same methods
// and words.
type ExitError struct {
	Status syscall.WaitStatus
}

// Error words the status as exec.ExitError does: "exit status 3",
// "signal: killed".
func (e *ExitError) Error() string {
	ws := e.Status
	switch {
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		s := "signal: " + ws.Signal().String()
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("exit status unknown (wait status %#x)", uint32(ws))
}

// ExitCode is the exit status, or -1 if a signal ended the program.
func (e *ExitError) ExitCode() int { return e.Status.ExitStatus() }

// Sys is the syscall.WaitStatus, as os.ProcessState.Sys.
func (e *ExitError) Sys() any { return e.Status }

// exitError is the error Child.Wait returns for m.
func exitError(m message) error {
	if m.Error != "" {
		return errors.New(m.Error)
	}
	ws := syscall.WaitStatus(m.Status)
	if ws.Exited() && ws.ExitStatus() == 0 {
		return nil
	}
	return &ExitError{Status: ws}
}

// Close ends the helper (it exits when its end of the socket closes) and
// waits for it and for the Client's goroutines. Programs still running
// keep running, as children of init: stop them first. Their Wait returns
// once they are gone.
func (c *Client) Close() error {
	c.spawnMu.Lock()
	syscall.Close(c.ctl)
	c.ctl = -1
	c.spawnMu.Unlock()
	c.events.Close()
	<-c.done
	err := c.cmd.Wait()
	c.wg.Wait()
	if err != nil {
		return fmt.Errorf("spawner helper: %w", err)
	}
	return nil
}
