package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/sdnotify"
)

// groupStarter is the exec driver's StartGroup, which the harness's driver
// has (the exec driver cannot be named here: it imports this package).
type groupStarter interface {
	StartGroup(cmd *exec.Cmd, spec *appfile.Spec, program string) (func(), error)
}

// withAppLogs gives the Manager app logs it can tap, as the daemon's
// applog.Logs (whose rotation leaves a goroutine per app behind, which the
// leak check of this suite would count): the output goes through a pipe
// into STATE/logs/NAME.log, shown to the tap on its way.
func withAppLogs(c *Config) {
	c.Logs = &tapLogs{dir: filepath.Join(c.StateDir, "logs")}
}

type tapLogs struct{ dir string }

func (l *tapLogs) Open(app string) (*os.File, func(context.Context) error, error) {
	return l.OpenTapped(app, nil)
}

func (l *tapLogs) OpenTapped(app string, tap func([]byte) bool) (*os.File, func(context.Context) error, error) {
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(filepath.Join(l.dir, app+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		defer r.Close()
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			f.Write(buf[:n])
			if tap != nil && n > 0 && !tap(buf[:n]) {
				tap = nil
			}
			if err != nil {
				return
			}
		}
	}()
	wait := func(ctx context.Context) error {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return w, wait, nil
}

// withStartGroup passes the harness driver's StartGroup, as the daemon does.
func withStartGroup(c *Config) {
	c.StartGroup = c.Driver.(groupStarter).StartGroup
}

// wakeTook wakes app and returns how long after its spawn it was ready.
func (h *harness) wakeTook(name string) time.Duration {
	h.t.Helper()
	_, release := h.wake(name)
	defer release()
	return time.Since(h.status(name).StartedAt)
}

// READY=1 is what counts, not the port: the program listens at once and
// says it is ready 400ms later.
func TestNotifyStartWaitsForREADYAndShowsSTATUS(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("pg", "-notify", "serving  \x1b[31mall\x1b[0m\ttables", "-ready-delay", "400ms", "-print-env", "NOTIFY_SOCKET")
	spec.Ready.Notify = true
	h.m.Apply([]*appfile.Spec{spec})
	if took := h.wakeTook("pg"); took < 400*time.Millisecond {
		t.Fatalf("ready %v after the spawn, before the program sent READY=1", took)
	}
	if got, want := h.status("pg").StatusText, "serving [31mall[0m tables"; got != want {
		t.Errorf("status text %q, want %q (printable, one line)", got, want)
	}
	if got := h.status("pg").Instances[0].StatusText; got == "" {
		t.Error("the instance's status has no STATUS text")
	}
	b, _ := os.ReadFile(h.m.logPath("pg"))
	if !regexp.MustCompile(`NOTIFY_SOCKET=@dynapm/notify/[0-9a-f]+\n`).Match(b) {
		t.Errorf("the program's NOTIFY_SOCKET is not an abstract dynapm socket; log:\n%s", b)
	}
}

// A program that never sends READY=1 is not ready, even though it listens.
func TestNotifyWithoutREADYTimesOut(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("quiet")
	spec.Ready.Notify = true
	spec.StartTimeout = 300 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	_, _, err := h.m.Wake(t.Context(), "quiet")
	wantErr(t, err, ErrStartTimeout)
	h.waitLog("app failed to start", "readiness probe timed out: no READY=1 on NOTIFY_SOCKET")
}

// Anyone on the host can send to an abstract socket: a READY=1 from a
// process of another user is ignored, one from the program's user counts.
func TestNotifyFromAnotherUserIsIgnored(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sending as another user needs root")
	}
	h := newHarness(t)
	spec := h.spec("app", "-print-env", "NOTIFY_SOCKET")
	spec.Ready.Notify = true
	h.m.Apply([]*appfile.Spec{spec})
	started := make(chan error, 1)
	go func() { started <- h.m.Start(t.Context(), "app", "manual") }()
	var socket string
	testutil.Eventually(t, mgrWait, func() bool {
		b, _ := os.ReadFile(h.m.logPath("app"))
		_, rest, ok := strings.Cut(string(b), "NOTIFY_SOCKET=")
		socket, _, _ = strings.Cut(rest, "\n")
		return ok && strings.Contains(rest, "\n")
	}, "the program did not print its NOTIFY_SOCKET")
	prog := worldRunnable(t, h.bin)
	send := func(uid uint32) {
		cmd := exec.Command(prog, "-mode", "notify", "-notify", fmt.Sprintf("from uid %d", uid))
		cmd.Env = []string{"NOTIFY_SOCKET=" + socket}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sending as uid %d: %v: %s", uid, err, out)
		}
	}
	send(65534)
	h.waitLog("notification ignored", "app=app", "sender_uid=65534")
	if st := h.status("app"); st.State != Starting || st.StatusText != "" {
		t.Fatalf("after another user's READY=1: %s, status text %q", fmtStatus(st), st.StatusText)
	}
	send(0)
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(mgrWait):
		t.Fatal("the program's user's READY=1 did not make the app ready")
	}
	if got := h.status("app").StatusText; got != "from uid 0" {
		t.Errorf("status text %q", got)
	}
}

// worldRunnable copies program into a directory every user can read, so
// that a process of another user can run it.
func worldRunnable(t *testing.T, program string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ready")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := os.ReadFile(program)
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, filepath.Base(program))
	if err := os.WriteFile(prog, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return prog
}

// The line is what counts, not the port: the program listens at once and
// prints the line 300ms later.
func TestLogStartWaitsForTheLine(t *testing.T) {
	h := newHarness(t, withAppLogs)
	spec := h.spec("web")
	spec.Command = []string{"/bin/sh", "-c", `"$0" -mode echo & sleep 0.3; echo "web: ready to serve"; wait`, h.bin}
	spec.Ready.Log = regexp.MustCompile(`ready to serve$`)
	h.m.Apply([]*appfile.Spec{spec})
	if took := h.wakeTook("web"); took < 300*time.Millisecond {
		t.Fatalf("ready %v after the spawn, before the line", took)
	}
}

func TestLogStartThatNeverPrintsTheLineTimesOut(t *testing.T) {
	h := newHarness(t, withAppLogs)
	spec := h.spec("web")
	spec.Ready.Log = regexp.MustCompile(`^never$`)
	spec.StartTimeout = 300 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	_, _, err := h.m.Wake(t.Context(), "web")
	wantErr(t, err, ErrStartTimeout)
	h.waitLog("app failed to start", `no output line matching \"^never$\"`)
}

func TestLogStartNeedsAppLogsItCanTap(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.Ready.Log = regexp.MustCompile(`listening`)
	h.m.Apply([]*appfile.Spec{spec})
	_, _, err := h.m.Wake(t.Context(), "web")
	wantErr(t, err, ErrStartFailed)
	if !strings.Contains(err.Error(), "ready.log: the program's output does not pass through the daemon") {
		t.Errorf("error %v does not say why", err)
	}
}

func TestLineTapMatchesWholeLinesAcrossPieces(t *testing.T) {
	for _, c := range []struct {
		name   string
		re     string
		pieces []string
		match  bool
	}{
		{"split line", `^ready to accept connections$`, []string{"LOG: x\nrea", "dy to accept ", "connections\r\n"}, true},
		{"no newline yet", `^ready$`, []string{"ready"}, false},
		{"the start header is not the program's", `starting at`, []string{startHeader + "2024 ---\n"}, false},
		{"long line matched on its start", `^a+$`, []string{strings.Repeat("a", maxTapLine+10) + "\n"}, true},
		{"a long line's rest is no line of its own", `^b`, []string{strings.Repeat("a", maxTapLine) + "bbb\n"}, false},
		{"later line", `ok`, []string{"no\nno\n", "ok\n"}, true},
	} {
		ready := make(chan struct{})
		tap := &lineTap{re: regexp.MustCompile(c.re), matched: ready}
		more := true
		for _, p := range c.pieces {
			if more = tap.write([]byte(p)); !more {
				break
			}
		}
		select {
		case <-ready:
			if !c.match || more {
				t.Errorf("%s: matched (wants more: %v)", c.name, more)
			}
		default:
			if c.match {
				t.Errorf("%s: no match", c.name)
			}
		}
	}
	tap := &lineTap{re: regexp.MustCompile(`x`), matched: make(chan struct{})}
	tap.off.Store(true)
	if tap.write([]byte("x\n")) {
		t.Error("a tap whose start is over wants more output")
	}
}

// The command runs, with the app's environment and its port, until it
// exits 0; the program listening is not enough.
func TestCommandStartRunsTheCommandUntilItExitsZero(t *testing.T) {
	h := newHarness(t, withStartGroup)
	dir := t.TempDir()
	count, flag := filepath.Join(dir, "count"), filepath.Join(dir, "ok")
	spec := h.spec("db")
	spec.Env = map[string]string{"GREETING": "hi"}
	spec.Ready.Command = []string{"/bin/sh", "-c", `echo "$GREETING $1" >> "$0"; test -e "$2"`, count, "${PORT}", flag}
	h.m.Apply([]*appfile.Spec{spec})
	started := make(chan error, 1)
	go func() { started <- h.m.Start(t.Context(), "db", "manual") }()
	testutil.Eventually(t, mgrWait, func() bool {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "\n") >= 3
	}, "the command did not run three times")
	if st := h.status("db"); st.State != Starting {
		t.Fatalf("ready while the command fails: %s", fmtStatus(st))
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(mgrWait):
		t.Fatal("not ready once the command exits 0")
	}
	up := netip.MustParseAddrPort(h.status("db").Upstream)
	b, _ := os.ReadFile(count)
	if first, _, _ := strings.Cut(string(b), "\n"); first != "hi "+strconv.Itoa(int(up.Port())) {
		t.Errorf("the command saw %q, want the app's env and port %d", first, up.Port())
	}
}

// A try that hangs ends with the start: nothing of it is left.
func TestCommandTryEndsAtTheStartTimeoutWithItsGroup(t *testing.T) {
	h := newHarness(t, withStartGroup)
	pidfile := filepath.Join(t.TempDir(), "pid")
	spec := h.spec("db")
	spec.Ready.Command = []string{"/bin/sh", "-c", `sleep 60 & echo $! > "$0"; wait`, pidfile}
	// Long enough for a loaded machine to start the program and let it
	// write its pid; the test is about what happens at the timeout.
	spec.StartTimeout = 2 * time.Second
	h.m.Apply([]*appfile.Spec{spec})
	began := time.Now()
	_, _, err := h.m.Wake(t.Context(), "db")
	wantErr(t, err, ErrStartTimeout)
	if took := time.Since(began); took > commandTryTimeout {
		t.Errorf("the start failed after %v: the try was not cut at start_timeout", took)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	testutil.Eventually(t, mgrWait, func() bool {
		return syscall.Kill(pid, 0) != nil || testutil.ProcState(pid) == 'Z'
	}, "the command's background process %d survives the start", pid)
}

// The command runs as the app's program does: as its user.
func TestCommandRunsAsTheAppsUser(t *testing.T) {
	uid := uidSeenAsNobody(t, "ready", func(spec *appfile.Spec, cmd []string) { spec.Ready.Command = cmd })
	if uid != "65534" {
		t.Fatalf("the command ran as uid %q, want 65534", uid)
	}
}

// uidSeenAsNobody starts app db as uid 65534 with a command, put in its
// spec by place, that writes the uid it runs as; it returns that uid.
func uidSeenAsNobody(t *testing.T, prefix string, place func(spec *appfile.Spec, cmd []string)) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("switching user needs root")
	}
	h := newHarness(t, withStartGroup)
	prog := worldRunnable(t, h.bin)
	out, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	spec := h.spec("db")
	spec.Command[0], spec.Dir = prog, filepath.Dir(prog)
	spec.User = "65534"
	place(spec, []string{"/bin/sh", "-c", `id -u > "$0"`, filepath.Join(out, "uid")})
	h.m.Apply([]*appfile.Spec{spec})
	if err := h.m.Start(t.Context(), "db", "manual"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(out, "uid"))
	return strings.TrimSpace(string(b))
}

// Without a way to run it as the app's user, the command does not run at
// all for an app that has one.
func TestCommandWithoutStartGroupRefusesAnAppWithAUser(t *testing.T) {
	m := &Manager{}
	spec := &appfile.Spec{User: "nobody", Dir: t.TempDir()}
	if err := m.runReadyCommand(t.Context(), spec, []string{"true"}, nil); !errors.Is(err, errNoGuard) {
		t.Fatalf("got %v, want errNoGuard", err)
	}
}

// serveOnce accepts connections on a loopback listener and runs handle on
// each, until the test ends.
func serveOnce(t *testing.T, handle func(c net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func TestTCPCheckSendsAndLooksForTheExpectedReply(t *testing.T) {
	p := newProber()
	pong := serveOnce(t, func(c net.Conn) {
		buf := make([]byte, 6)
		if n, _ := c.Read(buf); string(buf[:n]) == "PING\r\n" {
			c.Write([]byte("+PONG\r\n"))
		}
	})
	check := appfile.TCPCheck{Send: "PING\r\n", Expect: "+PONG"}
	if err := p.onceTCP(t.Context(), pong, check); err != nil {
		t.Errorf("PING to a server answering +PONG: %v", err)
	}
	// A server that speaks first (an SSH banner), in two pieces.
	banner := serveOnce(t, func(c net.Conn) {
		c.Write([]byte("SSH-2."))
		c.Write([]byte("0-OpenSSH_9.2\r\n"))
	})
	if err := p.onceTCP(t.Context(), banner, appfile.TCPCheck{Expect: "SSH-2.0-"}); err != nil {
		t.Errorf("banner: %v", err)
	}
	// A wrong answer fails at its pause, not at the try's timeout.
	loading := serveOnce(t, func(c net.Conn) {
		c.Write([]byte("-LOADING Redis is loading the dataset in memory\r\n"))
		c.Read(make([]byte, 1)) // until the probe closes
	})
	began := time.Now()
	err := p.onceTCP(t.Context(), loading, check)
	if err == nil || !strings.Contains(err.Error(), `expected "+PONG" in the reply, got "-LOADING Redis`) {
		t.Errorf("-LOADING: %v", err)
	}
	if took := time.Since(began); took >= probeTryTimeout {
		t.Errorf("a wrong answer took %v to fail", took)
	}
	closing := serveOnce(t, func(net.Conn) {})
	if err := p.onceTCP(t.Context(), closing, check); err == nil || !strings.Contains(err.Error(), "no reply") {
		t.Errorf("a server that closes: %v", err)
	}
}

// Only the plain connect hands its connection over: a TCP exchange's is
// spent.
func TestOnlyThePlainConnectReturnsItsConnection(t *testing.T) {
	p := newProber()
	up := serveOnce(t, func(c net.Conn) { c.Write([]byte("hello\n")) })
	deadline := time.Now().Add(mgrWait)
	conn, err := p.waitReady(t.Context(), newRunningProc(), &readiness{upstream: up, tcp: appfile.TCPCheck{Expect: "hello"}}, 0, deadline)
	if err != nil || conn != -1 {
		t.Fatalf("tcp check: conn %d, err %v; want -1, nil", conn, err)
	}
	conn, err = p.waitReady(t.Context(), newRunningProc(), &readiness{upstream: up}, 0, deadline)
	if err != nil || conn < 0 {
		t.Fatalf("plain connect: conn %d, err %v; want a connection", conn, err)
	}
	syscall.Close(conn)
}

func TestStatusTextIsOnePrintableLine(t *testing.T) {
	for in, want := range map[string]string{
		"ok":                           "ok",
		"a\nb\tc":                      "a b c",
		"\x1b]0;title\x07\x1b[2Jclear": "]0;title[2Jclear",
		"rtl \u202eevil":               "rtl evil",
		"bad \xff utf8":                "bad ? utf8",
		strings.Repeat("é", 300):       strings.Repeat("é", maxStatusText-1) + "…",
	} {
		if got := cleanStatus(in); got != want {
			t.Errorf("cleanStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkNotifyWatch is what ready: {notify: true} adds to a start on
// DynaPM's side: the socket made before the spawn, and the READY=1 seen
// through it (here sent by this process, as the program would).
func BenchmarkNotifyWatch(b *testing.B) {
	log := slog.New(slog.DiscardHandler)
	for b.Loop() {
		w, err := newNotifyWatch()
		if err != nil {
			b.Fatal(err)
		}
		w.started(os.Getpid(), log)
		if err := (&sdnotify.Notifier{Socket: w.notify.Socket()}).Notify(sdnotify.Ready); err != nil {
			b.Fatal(err)
		}
		<-w.ready
		w.close()
	}
}
