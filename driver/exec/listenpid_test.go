package execdriver

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/exectest"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// listenSocket returns a listening socket on 127.0.0.1 as a file, as the
// l4 server hands it to a program, and its address.
func listenSocket(t testing.TB) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, ln.Addr().String()
}

// parentOf returns pid's parent.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// listenPIDWays runs test with handed-off programs started both ways:
// traced, and through the shell (forced, as where tracing is refused).
func listenPIDWays(t *testing.T, test func(t *testing.T, d *Driver)) {
	for _, shell := range []bool{false, true} {
		name := map[bool]string{false: "traced", true: "shell"}[shell]
		t.Run(name, func(t *testing.T) {
			d := newExecTestDriver(t)
			d.listenPIDByShell = shell
			test(t, d)
			d.mu.Lock()
			n := d.shellStarts
			d.mu.Unlock()
			if shell != (n > 0) {
				t.Errorf("%d programs started through the shell", n)
			}
		})
	}
}

// The program sees LISTEN_PID equal to its own pid as the shell reads it
// ($$, and in arithmetic, where a leading zero would mean octal), with its
// other variables intact, and the environment ends with it.
func TestHandedOffProgramFindsItsPidInListenPID(t *testing.T) {
	listenPIDWays(t, func(t *testing.T, d *Driver) {
		sock, _ := listenSocket(t)
		req, dir := execRequest(t)
		req.Spec.Command = []string{"/bin/sh", "-c", `echo "$LISTEN_PID $$ $((LISTEN_PID + 0)) $LISTEN_FDS $LISTEN_FDNAMES $GREETING"; tr '\0' '\n' </proc/$$/environ | grep -c '^LISTEN_PID='`}
		// A variable twice: exec keeps the last, and the placeholder must
		// stay the last of the variables counted.
		req.Env = []string{"GREETING=hi", "LISTEN_PID=1", "PATH=/usr/bin:/bin", "GREETING=hello"}
		req.Sockets, req.SocketNames = []*os.File{sock}, []string{"web"}
		p := execStart(t, d, req)
		waitExecDone(t, p)
		if err := p.Err(); err != nil {
			t.Fatalf("program: %v\n%s", err, readAppLog(t, dir))
		}
		pid := strconv.Itoa(p.Pid())
		want := fmt.Sprintf("%s %s %s 1 web hello\n1\n", pid, pid, pid)
		if got := readAppLog(t, dir); got != want {
			t.Errorf("the program printed %q, want %q", got, want)
		}
	})
}

// A Go program (strconv.Atoi, as go-systemd reads it) serves on the
// socket it is handed, and a connection queued before it started is
// answered.
func TestHandedOffGoProgramServesTheQueuedConnection(t *testing.T) {
	listenPIDWays(t, func(t *testing.T, d *Driver) {
		sock, addr := listenSocket(t)
		c, err := net.DialTimeout("tcp", addr, execWaitLimit)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req, dir := execRequest(t, "-listen-fds", "-hello")
		req.Sockets = []*os.File{sock}
		p := execStart(t, d, req)
		defer execStop(t, p, 5*time.Second)
		c.SetDeadline(time.Now().Add(execWaitLimit))
		line, err := bufio.NewReader(c).ReadString('\n')
		if want := fmt.Sprintf("testapp pid=%d\n", p.Pid()); line != want {
			t.Fatalf("got %q (%v), want %q; log:\n%s", line, err, want, readAppLog(t, dir))
		}
		// With the spawner helper, the helper forked it, as any program.
		d.mu.Lock()
		want := os.Getpid()
		if d.spawner != nil {
			want = d.spawner.Pid()
		}
		d.mu.Unlock()
		if ppid := parentOf(t, p.Pid()); ppid != want {
			t.Errorf("the program's parent is %d, want %d", ppid, want)
		}
	})
}

// A program run as another user gets its pid too: it is traced after it
// took the user's credentials.
func TestHandedOffProgramRunAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a program as another user")
	}
	listenPIDWays(t, func(t *testing.T, d *Driver) {
		sock, _ := listenSocket(t)
		req, dir := execRequest(t)
		req.Spec.Dir = "/" // the log stays in dir, opened by the daemon
		req.Spec.User = "nobody"
		req.Spec.Command = []string{"/bin/sh", "-c", `echo "$(id -un) $LISTEN_PID $$"`}
		req.Sockets = []*os.File{sock}
		p := execStart(t, d, req)
		waitExecDone(t, p)
		pid := strconv.Itoa(p.Pid())
		if got, want := readAppLog(t, dir), "nobody "+pid+" "+pid+"\n"; got != want {
			t.Errorf("the program printed %q, want %q", got, want)
		}
	})
}

// With limits or a umask, the traced program is the guard shell, which
// passes LISTEN_PID on to the program it execs in its place.
func TestHandedOffProgramBehindTheGuardScript(t *testing.T) {
	listenPIDWays(t, func(t *testing.T, d *Driver) {
		sock, _ := listenSocket(t)
		req, dir := execRequest(t)
		req.Spec.Umask = "027"
		req.Spec.Command = []string{"/bin/sh", "-c", `echo "$(umask) $LISTEN_PID $$"`}
		req.Sockets = []*os.File{sock}
		p := execStart(t, d, req)
		waitExecDone(t, p)
		pid := strconv.Itoa(p.Pid())
		if got, want := readAppLog(t, dir), "0027 "+pid+" "+pid+"\n"; got != want {
			t.Errorf("the program printed %q, want %q", got, want)
		}
	})
}

// An inetd program has the connection as stdin, stdout and fd 3.
func TestInetdProgramFindsItsPidInListenPID(t *testing.T) {
	listenPIDWays(t, func(t *testing.T, d *Driver) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.DialTimeout("tcp", ln.Addr().String(), execWaitLimit)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conn, err := srv.(*net.TCPConn).File()
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req, _ := execRequest(t)
		req.Spec.Command = []string{"/bin/sh", "-c", `echo "$((LISTEN_PID - $$)) $LISTEN_FDS"; echo fd3 >&3`}
		req.Sockets, req.Conn = []*os.File{conn}, conn
		p := execStart(t, d, req)
		conn.Close()
		c.SetDeadline(time.Now().Add(execWaitLimit))
		r := bufio.NewReader(c)
		for _, want := range []string{"0 1\n", "fd3\n"} {
			if line, err := r.ReadString('\n'); line != want {
				t.Errorf("got %q (%v), want %q", line, err, want)
			}
		}
		waitExecDone(t, p)
	})
}

// A set-user-ID program is started through the shell: traced, it would
// run without the privilege a daemon without CAP_SYS_PTRACE cannot give.
func TestSetUIDProgramIsNotTraced(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	testutil.WriteFile(t, prog, "#!/bin/sh\n")
	if err := os.Chmod(prog, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if !gainsPrivileges(prog) {
		t.Errorf("a set-user-ID program is said not to gain privileges")
	}
	if err := os.Chmod(prog, 0o755); err != nil {
		t.Fatal(err)
	}
	if gainsPrivileges(prog) {
		t.Errorf("a plain program is said to gain privileges")
	}
}

// noPtraceEnv makes the test binary a stand-in daemon forbidden to
// ptrace by a seccomp filter, as Docker's default profile or Yama's
// ptrace_scope 3 forbid it (see runNoPtrace).
const noPtraceEnv = "DYNAPM_TEST_NO_PTRACE"

// Where tracing is refused, handed-off programs are started through the
// shell, LISTEN_PID still their pid, and the daemon says so once.
func TestListenPIDFallsBackToTheShellWhereTracingIsRefused(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), noPtraceEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("stand-in daemon: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[2] != "shell starts 2, by shell true" {
		t.Fatalf("stand-in daemon printed %q, want two pid lines and \"shell starts 2, by shell true\"\n%s", out, stderr.String())
	}
	for _, l := range lines[:2] {
		var pid, listenPID, self int
		if _, err := fmt.Sscanf(l, "%d %d %d", &pid, &listenPID, &self); err != nil || pid != listenPID || pid != self {
			t.Errorf("pid, LISTEN_PID, $$: %q, want all equal", l)
		}
	}
	if n := strings.Count(stderr.String(), "tracing a program at its start is not permitted"); n != 1 {
		t.Errorf("the fallback is logged %d times, want once:\n%s", n, stderr.String())
	}
}

// runNoPtrace is the stand-in daemon: it forbids ptrace to itself and
// its children (EPERM), starts two handed-off programs, and prints each
// one's pid, LISTEN_PID and $$, then how they were started.
func runNoPtrace(dir string) int {
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_PTRACE},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "no_new_privs:", err)
		return 1
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		fmt.Fprintln(os.Stderr, "seccomp:", errno)
		return 1
	}
	d := New(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	defer d.Close()
	// The helper, when the suite runs with one, inherits the filter.
	closeSpawner, err := exectest.UseSpawner(d)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer closeSpawner()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sock, err := ln.(*net.TCPListener).File()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range 2 {
		logPath := filepath.Join(dir, fmt.Sprintf("app%d.log", i))
		log, err := os.Create(logPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		p, err := d.Start(context.Background(), lifecycle.StartRequest{
			Spec:    &appfile.Spec{Name: "t", Command: []string{"/bin/sh", "-c", `echo "$LISTEN_PID $$"`}, Dir: dir},
			Env:     []string{},
			Log:     log,
			Sockets: []*os.File{sock},
		})
		log.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "Start:", err)
			return 1
		}
		<-p.Done()
		b, _ := os.ReadFile(logPath)
		fmt.Printf("%d %s", p.Pid(), b)
	}
	d.mu.Lock()
	fmt.Printf("shell starts %d, by shell %v\n", d.shellStarts, d.listenPIDByShell)
	d.mu.Unlock()
	return 0
}

// A program started through the shell is not traced, so the spawner
// helper would take it, but not with more descriptors than one message
// carries: the daemon forks it itself.
func TestProgramWithManySocketsStartsWithoutTheSpawner(t *testing.T) {
	if !exectest.WithSpawner() {
		t.Skip("runs in the suite with the spawner helper")
	}
	d := newExecTestDriver(t)
	d.listenPIDByShell = true
	sock, _ := listenSocket(t)
	const n = 300 // beyond the helper's 250
	socks := make([]*os.File, n)
	for i := range socks {
		fd, err := unix.Dup(int(sock.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		socks[i] = os.NewFile(uintptr(fd), "sock")
		defer socks[i].Close()
	}
	req, dir := execRequest(t)
	req.Spec.Command = []string{"/bin/sh", "-c", `echo "$LISTEN_FDS $((LISTEN_PID - $$)) $PPID"; [ -e /proc/$$/fd/302 ] && echo last`}
	req.Sockets = socks
	p := execStart(t, d, req)
	waitExecDone(t, p)
	if err := p.Err(); err != nil {
		t.Fatalf("program: %v\n%s", err, readAppLog(t, dir))
	}
	want := fmt.Sprintf("%d 0 %d\nlast\n", n, os.Getpid())
	if got := readAppLog(t, dir); got != want {
		t.Errorf("the program printed %q, want %q (its parent the daemon)", got, want)
	}
}
