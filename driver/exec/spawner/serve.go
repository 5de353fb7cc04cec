package spawner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"

	"github.com/dynapm/dynapm/driver/exec/forkwatch"
	"github.com/dynapm/dynapm/driver/exec/listenpid"
)

// Main runs the helper on descriptors 3 (requests) and 4 (exits), where
// Start puts its ends of the socket pairs, and returns the process's exit
// code. main calls it when its first argument is HelperArg.
func Main() int {
	if err := Serve(3, 4); err != nil {
		fmt.Fprintf(os.Stderr, "dynapm spawner: %v\n", err)
		return 1
	}
	return 0
}

// Serve runs the helper: it reads requests from ctl with blocking system
// calls, starts each program and answers with its pid, and reports each
// program's exit on events. It returns when the daemon closes its end (or
// dies); programs still running are left alone (the daemon's shutdown or
// its reaper stops them).
func Serve(ctl, events int) error {
	// Programs with ListenPID are traced from this thread, which forks
	// them (package listenpid).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Inherited without close-on-exec: the programs must not get them
	// (a program holding the events socket would hide the helper's end).
	syscall.CloseOnExec(ctl)
	syscall.CloseOnExec(events)
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	defer devNull.Close()
	answer := func(m message) {
		b, _ := json.Marshal(m)
		// A failed send means the daemon is gone: the next read ends
		// the loop.
		_ = sendmsg(ctl, b, nil)
	}
	var emu sync.Mutex
	report := func(m message) {
		b, _ := json.Marshal(m)
		emu.Lock()
		defer emu.Unlock()
		_ = sendmsg(events, b, nil)
	}
	buf := make([]byte, maxMessage)
	oob := make([]byte, syscall.CmsgSpace(maxFiles*4))
	for {
		n, oobn, _, _, err := syscall.Recvmsg(ctl, buf, oob, syscall.MSG_CMSG_CLOEXEC)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return nil // the daemon closed its end
		}
		files, ferr := receivedFiles(oob[:oobn])
		var req Request
		err = json.Unmarshal(buf[:n], &req)
		var attr *os.ProcAttr
		if err == nil && ferr == nil {
			attr, ferr = procAttr(req, files, devNull)
		}
		if err != nil || ferr != nil {
			closeAll(files)
			answer(message{Type: "failed", Error: fmt.Sprintf("bad request: %v", errors.Join(err, ferr))})
			continue
		}
		p, err := startProgram(req, attr)
		closeAll(files) // the program holds its own
		if err != nil {
			m := message{Type: "failed", Error: err.Error()}
			var errno syscall.Errno
			var lerr *listenpid.Error
			switch {
			case errors.As(err, &lerr):
				m.Traced = true
			case errors.As(err, &errno):
				m.Errno = int(errno)
			}
			answer(m)
			continue
		}
		answer(message{Type: "started", Pid: p.Pid})
		go waitChild(p, report)
	}
}

// procAttr is how req's program is started, with files as sent with it
// (the cgroup's directory last, if req.Cgroup).
func procAttr(req Request, files []*os.File, devNull *os.File) (*os.ProcAttr, error) {
	sys := &syscall.SysProcAttr{Setpgid: true, Credential: req.Credential}
	if req.Cgroup {
		if len(files) == 0 {
			return nil, errors.New("no cgroup descriptor")
		}
		sys.UseCgroupFD, sys.CgroupFD = true, int(files[len(files)-1].Fd())
		files = files[:len(files)-1]
	}
	if len(req.Fds) < 3 {
		return nil, fmt.Errorf("%d program descriptors, want at least 3", len(req.Fds))
	}
	attr := &os.ProcAttr{Dir: req.Dir, Env: req.Env, Files: make([]*os.File, len(req.Fds)), Sys: sys}
	for i, k := range req.Fds {
		switch {
		case k == -1:
			attr.Files[i] = devNull
		case k >= 0 && k < len(files):
			attr.Files[i] = files[k]
		default:
			return nil, fmt.Errorf("descriptor %d: index %d of %d sent", i, k, len(files))
		}
	}
	return attr, nil
}

// startProgram starts req's program; with ListenPID traced, its LISTEN_PID set
// (the caller's thread is locked: it is the tracer). On a
// *listenpid.Error the program was killed before it ran.
func startProgram(req Request, attr *os.ProcAttr) (*os.Process, error) {
	if req.ListenPID {
		attr.Env = listenpid.Env(attr.Env)
		attr.Sys.Ptrace = true
	}
	p, err := startWatched(req, attr)
	if err != nil || !req.ListenPID {
		return p, err
	}
	if err := listenpid.Write(p.Pid, len(attr.Env)); err != nil {
		_ = p.Kill()
		_, _ = p.Wait()
		return nil, err
	}
	return p, nil
}

// startWatched starts req's program, its fork watched (package
// forkwatch) where its user, or any signal once it is traced, could stop
// it before its exec and so hang this thread: such a start fails, with a
// *listenpid.Error if traced (the daemon falls back to the shell).
func startWatched(req Request, attr *os.ProcAttr) (*os.Process, error) {
	if !req.ListenPID && req.Credential == nil {
		return os.StartProcess(req.Path, req.Args, attr)
	}
	var p *os.Process
	stalled, err := forkwatch.Start(forkwatch.Bound, func() (err error) {
		p, err = os.StartProcess(req.Path, req.Args, attr)
		return err
	})
	if !stalled {
		return p, err
	}
	if err == nil {
		_ = p.Kill()
		_, _ = p.Wait()
	}
	if req.ListenPID {
		return nil, &listenpid.Error{Err: forkwatch.ErrStalled}
	}
	return nil, fmt.Errorf("starting %s: %w", req.Path, forkwatch.ErrStalled)
}

// waitChild reports p's end.
func waitChild(p *os.Process, send func(message)) {
	st, err := p.Wait()
	m := message{Type: "exited", Pid: p.Pid}
	if err != nil {
		m.Error = err.Error()
	} else if ws, ok := st.Sys().(syscall.WaitStatus); ok {
		m.Status = uint32(ws)
	}
	send(m)
}

// receivedFiles returns the descriptors passed with a request.
func receivedFiles(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parsing control message: %w", err)
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	if len(files) > maxFiles {
		closeAll(files)
		return nil, fmt.Errorf("%d descriptors with one request", len(files))
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
