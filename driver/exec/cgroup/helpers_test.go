package cgroup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var unsafeChars = regexp.MustCompile(`[^a-z0-9_-]+`)

// testName is a subtree name for this test in this process.
func testName(t *testing.T) string {
	n := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-")
	return fmt.Sprintf("dynapm-test-%.150s-%d", n, os.Getpid())
}

// openTest opens a subtree of the test's own, destroyed with its groups
// when the test ends, or skips the test where cgroup2 is not usable.
func openTest(t *testing.T) *Subtree {
	t.Helper()
	s, err := Open(Config{Name: testName(t)})
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("cgroup2 is not usable here (needs a writable cgroup2 mount, e.g. as root): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroySubtree(t, s) })
	return s
}

func destroySubtree(t *testing.T, s *Subtree) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names, err := s.List()
	if err != nil {
		t.Error(err)
	}
	for _, n := range names {
		g, err := s.Open(n)
		if err == nil {
			err = g.Destroy(ctx)
		}
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	s.Close()
	if err := unix.Rmdir(s.Path()); err != nil {
		t.Errorf("cleanup: removing %s: %v", s.Path(), err)
	}
}

// proc is a program started inside a group, with its standard streams.
type proc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	raw *os.File // out's pipe, for read deadlines
}

// startIn starts /bin/sh -c script born inside g.
func startIn(t *testing.T, g *Group, script string) *proc {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &proc{cmd: cmd, in: in, out: bufio.NewReader(out), raw: out.(*os.File)}
}

// line reads a line the program writes, within 10 s.
func (p *proc) line(t *testing.T) string {
	t.Helper()
	p.raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := p.out.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the program's output: %v", err)
	}
	return strings.TrimSuffix(l, "\n")
}

// pidLine reads a pid the program writes.
func (p *proc) pidLine(t *testing.T) int {
	t.Helper()
	l := p.line(t)
	pid, err := strconv.Atoi(l)
	if err != nil {
		t.Fatalf("want a pid, got %q", l)
	}
	return pid
}

// killedBySignal checks that the program ended by sig.
func (p *proc) killedBySignal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("program ended with %v, want signal %v", err, sig)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != sig {
		t.Fatalf("program ended with %v, want signal %v", err, sig)
	}
}

// pidfd holds a process so that its end can be checked without the pid
// naming another process by then.
func pidfd(t *testing.T, pid int) int {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// exited reports whether the pidfd's process has ended (it is readable).
func exited(t *testing.T, fd int) bool {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// session returns a process's session id from /proc/PID/stat.
func session(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid pgrp session ...; comm may hold spaces.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		t.Fatalf("/proc/%d/stat: session %q", pid, f[3])
	}
	return sid
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
