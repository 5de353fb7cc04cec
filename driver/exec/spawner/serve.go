package spawner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
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
	oob := make([]byte, syscall.CmsgSpace(2*4)) // the output and a cgroup
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
		if err == nil && ferr == nil && req.Cgroup && len(files) == 0 {
			ferr = errors.New("no cgroup descriptor")
		}
		if err != nil || ferr != nil {
			closeAll(files)
			answer(message{Type: "failed", Error: fmt.Sprintf("bad request: %v", errors.Join(err, ferr))})
			continue
		}
		sys := &syscall.SysProcAttr{Setpgid: true, Credential: req.Credential}
		if req.Cgroup {
			sys.UseCgroupFD, sys.CgroupFD = true, int(files[len(files)-1].Fd())
		}
		out := devNull
		if len(files) == 2 || (len(files) == 1 && !req.Cgroup) {
			out = files[0]
		}
		p, err := os.StartProcess(req.Path, req.Args, &os.ProcAttr{
			Dir:   req.Dir,
			Env:   req.Env,
			Files: []*os.File{devNull, out, out},
			Sys:   sys,
		})
		closeAll(files) // the program holds its own
		if err != nil {
			m := message{Type: "failed", Error: err.Error()}
			var errno syscall.Errno
			if errors.As(err, &errno) {
				m.Errno = int(errno)
			}
			answer(m)
			continue
		}
		answer(message{Type: "started", Pid: p.Pid})
		go waitChild(p, report)
	}
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

// receivedFiles returns the descriptors passed with a request: none, the
// output, the cgroup, or both.
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
	if len(files) > 2 {
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
