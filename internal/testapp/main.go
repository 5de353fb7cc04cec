// Command testapp is the small server program that DynaPM's tests start as a
// real app. It can echo, answer HTTP, hold connections, start slowly, crash,
// ignore SIGTERM, fork a grandchild, keep its output pipes open from a
// background process, listen with a tiny backlog and allocate memory, each
// behaviour chosen by a flag.
//
// Tests build it with testutil.TestApp; it is not part of the daemon.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/sdnotify"
)

// crashLine is what the program prints to stderr before crashing on purpose,
// so tests can look for it in the daemon's log.
const crashLine = "testapp: crashing on purpose"

// config holds the parsed flags.
type config struct {
	listen     string
	mode       string
	delay      time.Duration
	readyDelay time.Duration
	crash      bool
	crashAfter time.Duration
	ignoreTerm bool
	grandchild string
	escape     string
	holdOutput bool
	backlog    int
	pidfile    string
	allocMiB   int
	printEnv   string
	work       time.Duration
	target     string
	printLimit bool
	notify     string
	stamp      string
	label      string
	listenFDs  bool
	hello      bool
	exitIdle   time.Duration
	termLinger time.Duration
}

// stampFile and stampLabel are -stamp and -label, for stamp.
var stampFile, stampLabel string

// stamp appends "LABEL EVENT UNIXNANO" to the -stamp file, if any: the
// program's own account of when it started, listened and was told to stop,
// which tests compare across programs. O_APPEND keeps the lines of several
// programs sharing one file whole.
func stamp(event string) {
	if stampFile == "" {
		return
	}
	f, err := os.OpenFile(stampFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testapp: %v\n", err)
		return
	}
	fmt.Fprintf(f, "%s %s %d\n", stampLabel, event, time.Now().UnixNano())
	f.Close()
}

func main() {
	var c config
	flag.StringVar(&c.listen, "listen", "", "address to listen on, or unix:/path for a socket file (default 127.0.0.1:$PORT)")
	flag.StringVar(&c.mode, "mode", "echo", "echo | http | hold | udp-echo | tcp-udp-echo | sleep | get (a healthcheck: GET -target, exit 0 on 2xx) | notify (send -notify and exit) | orphan (start -grandchild's sleeper, write -pidfile, exit)")
	flag.DurationVar(&c.delay, "delay", 0, "sleep this long before listening (slow start)")
	flag.DurationVar(&c.readyDelay, "ready-delay", 0, "http mode: /healthz answers 503 until this long after start; -notify: READY=1 is sent then")
	flag.StringVar(&c.notify, "notify", "", "send READY=1 and STATUS=this text to $NOTIFY_SOCKET once listening (and -ready-delay after start); mode notify: send them and exit")
	flag.BoolVar(&c.crash, "crash", false, "print a line to stderr and exit 3 before listening")
	flag.DurationVar(&c.crashAfter, "crash-after", 0, "crash (exit 3) this long after listening")
	flag.BoolVar(&c.ignoreTerm, "ignore-term", false, "ignore SIGTERM")
	flag.StringVar(&c.grandchild, "grandchild", "", "fork a grandchild that ignores SIGTERM and write its pid to this file")
	flag.StringVar(&c.escape, "escape", "", "double-fork an orphan that leaves the session (setsid), ignores SIGTERM and holds stdout, and write its pid to this file (a daemonizing server's worker)")
	flag.BoolVar(&c.holdOutput, "hold-output", false, "start a background child that keeps stdout/stderr open")
	flag.IntVar(&c.backlog, "backlog", 0, "listen backlog (0: the system default)")
	flag.StringVar(&c.pidfile, "pidfile", "", "write own pid to this file once listening")
	flag.IntVar(&c.allocMiB, "alloc", 0, "allocate and touch this many MiB")
	flag.StringVar(&c.printEnv, "print-env", "", "print this environment variable to stdout at start")
	flag.DurationVar(&c.work, "work", 0, "echo mode: burn this much CPU time per read before echoing it (a CPU-bound backend)")
	flag.StringVar(&c.target, "target", "", "get mode: the URL to GET")
	flag.BoolVar(&c.printLimit, "print-limits", false, "print nofile, nproc, umask, uid and gid to stdout at start")
	flag.StringVar(&c.stamp, "stamp", "", "append \"LABEL start|listening|term UNIXNANO\" lines to this file")
	flag.StringVar(&c.label, "label", "app", "the LABEL of -stamp lines")
	flag.BoolVar(&c.listenFDs, "listen-fds", false, "serve on the listening sockets passed as systemd does (LISTEN_FDS, LISTEN_PID), every one of them, instead of listening")
	flag.BoolVar(&c.hello, "hello", false, "write \"testapp pid=PID\\n\" to each connection first")
	flag.DurationVar(&c.exitIdle, "exit-idle", 0, "exit 0 once no connection has been open for this long, as socket-activated services do")
	flag.DurationVar(&c.termLinger, "term-linger", 0, "with -listen-fds: at SIGTERM close the listeners and exit this long after, as a server finishing its requests does")
	flag.Parse()
	stampFile, stampLabel = c.stamp, c.label

	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "testapp: %v\n", err)
		os.Exit(1)
	}
}

func run(c config) error {
	start := time.Now()
	stamp("start")
	if c.printEnv != "" {
		fmt.Printf("%s=%s\n", c.printEnv, os.Getenv(c.printEnv))
	}
	if c.printLimit {
		printLimits()
	}
	if c.ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	} else if c.termLinger <= 0 || !c.listenFDs {
		go exitOnTerm()
	}
	mem := allocate(c.allocMiB)
	defer runtime.KeepAlive(mem)

	if c.grandchild != "" {
		if err := forkGrandchild(c.grandchild, false); err != nil {
			return err
		}
	}
	if c.escape != "" {
		if err := escape(c.escape); err != nil {
			return err
		}
	}
	if c.mode == "orphan" {
		return forkGrandchild(c.pidfile, true)
	}
	if c.holdOutput {
		if err := holdOutput(); err != nil {
			return err
		}
	}
	if c.mode == "get" {
		return get(c.target)
	}
	if c.mode == "notify" {
		return sdnotify.FromEnv().Notify(sdnotify.Ready, sdnotify.Status(c.notify))
	}
	if c.mode == "sleep" {
		if c.pidfile != "" {
			if err := writePid(c.pidfile, os.Getpid()); err != nil {
				return err
			}
		}
		select {}
	}
	if c.crash {
		crash()
	}
	if c.delay > 0 {
		time.Sleep(c.delay)
	}

	if c.listenFDs {
		lns, err := inheritedListeners()
		if err != nil {
			return err
		}
		fmt.Printf("testapp: serving %d inherited sockets mode %s\n", len(lns), c.mode)
		if c.pidfile != "" {
			if err := writePid(c.pidfile, os.Getpid()); err != nil {
				return err
			}
		}
		if c.termLinger > 0 && !c.ignoreTerm {
			go lingerOnTerm(lns, c.termLinger)
		}
		errs := make(chan error, len(lns))
		idle := newIdleExit(c.exitIdle)
		for _, ln := range lns {
			ln = idle.wrap(ln)
			if c.hello {
				ln = helloListener{ln}
			}
			go func() { errs <- serve(c, ln, start) }()
		}
		err = <-errs
		if c.termLinger > 0 {
			select {} // closed at SIGTERM: lingerOnTerm exits
		}
		return err
	}

	addr := c.listen
	if addr == "" {
		addr = net.JoinHostPort("127.0.0.1", os.Getenv("PORT"))
	}
	if ok, err := runUDP(c, addr); ok {
		return err
	}
	ln, err := listen(addr, c.backlog)
	if err != nil {
		return err
	}
	fmt.Printf("testapp: listening on %s mode %s\n", ln.Addr(), c.mode)
	stamp("listening")
	if c.pidfile != "" {
		if err := writePid(c.pidfile, os.Getpid()); err != nil {
			return err
		}
	}
	if c.crashAfter > 0 {
		time.AfterFunc(c.crashAfter, crash)
	}
	if c.notify != "" {
		time.AfterFunc(time.Until(start.Add(c.readyDelay)), func() {
			if err := sdnotify.FromEnv().Notify(sdnotify.Ready, sdnotify.Status(c.notify)); err != nil {
				fmt.Fprintf(os.Stderr, "testapp: %v\n", err)
			}
		})
	}

	if c.hello {
		ln = helloListener{ln}
	}
	return serve(c, ln, start)
}

// serve serves ln in c's mode.
func serve(c config, ln net.Listener, start time.Time) error {
	switch c.mode {
	case "echo":
		return serveEcho(ln, c.work)
	case "http":
		return serveHTTP(ln, start.Add(c.readyDelay))
	case "hold":
		return serveHold(ln)
	default:
		return fmt.Errorf("unknown mode %q", c.mode)
	}
}

// exitOnTerm exits 0 at the first SIGTERM or SIGINT.
func exitOnTerm() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	stamp("term")
	os.Exit(0)
}

func crash() {
	fmt.Fprintln(os.Stderr, crashLine)
	os.Exit(3)
}

func allocate(mib int) []byte {
	if mib <= 0 {
		return nil
	}
	b := make([]byte, mib<<20)
	// Touch every page so that the memory is resident, not just reserved.
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return b
}

// forkGrandchild re-executes this program in sleep mode, ignoring SIGTERM,
// in the same process group, with our output when holdOutput. The grandchild writes its own pid to pidfile
// once it ignores SIGTERM, and we wait for that, so that whoever reads the
// pid file may signal the grandchild at once.
func forkGrandchild(pidfile string, holdOutput bool) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	cmd := exec.Command(self, "-mode", "sleep", "-ignore-term", "-pidfile", pidfile)
	if holdOutput {
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting grandchild: %w", err)
	}
	// Reap it should it die while we live, so tests never see a zombie.
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for {
		if _, err := os.Stat(pidfile); err == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-exited:
			return fmt.Errorf("grandchild exited at start")
		case <-timeout:
			return fmt.Errorf("grandchild did not write %s", pidfile)
		}
	}
}

// escape double-forks as a daemonizing program does: a child that calls
// setsid (a session and process group of its own) starts the grandchild,
// in that session, and exits once the grandchild wrote its pid, leaving it
// an orphan. The grandchild keeps our stdout and stderr (the log).
func escape(pidfile string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	cmd := exec.Command(self, "-mode", "orphan", "-pidfile", pidfile)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("double-forking: %w", err)
	}
	return nil
}

// holdOutput starts a background child that inherits stdout and stderr and
// sleeps forever, as a daemonising server's helper would.
func holdOutput() error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	cmd := exec.Command(self, "-mode", "sleep")
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting output holder: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// writePid writes pid to path atomically, so a reader never sees a partial
// file.
func writePid(path string, pid int) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	return nil
}

// listen listens on addr; with a backlog > 0 it builds the socket by hand,
// because net.Listen always uses the system's maximum backlog.
func listen(addr string, backlog int) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return net.Listen("unix", path) // removed at exit by the listener's Close
	}
	if backlog <= 0 {
		return net.Listen("tcp", addr)
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", addr, err)
	}
	var (
		family int
		sa     syscall.Sockaddr
	)
	if ip4 := ta.IP.To4(); ip4 != nil || ta.IP == nil {
		s := &syscall.SockaddrInet4{Port: ta.Port}
		if ip4 != nil {
			copy(s.Addr[:], ip4)
		}
		family, sa = syscall.AF_INET, s
	} else {
		s := &syscall.SockaddrInet6{Port: ta.Port}
		copy(s.Addr[:], ta.IP.To16())
		family, sa = syscall.AF_INET6, s
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close() // net.FileListener dups the descriptor
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return nil, fmt.Errorf("setting SO_REUSEADDR: %w", err)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("binding %s: %w", addr, err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	return net.FileListener(f)
}

func serveEcho(ln net.Listener, work time.Duration) error {
	rounds := calibrate(work)
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		if rounds > 0 {
			go echoWorking(conn, rounds)
		} else {
			go echo(conn)
		}
	}
}

// echoWorking echoes each read after a fixed amount of computation (rounds,
// calibrated to -work of CPU time), as a CPU-bound request handler would:
// with GOMAXPROCS=1 one process computes one request at a time, so
// throughput grows only with more processes.
func echoWorking(conn net.Conn, rounds int) {
	defer conn.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			runtime.KeepAlive(burn(rounds)) // keep the work from being optimised away
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// burn hashes rounds blocks of 4096 steps: a fixed amount of work, so that
// requests sharing a CPU take longer, as real computation does.
func burn(rounds int) uint64 {
	h := uint64(14695981039346656037)
	for range rounds {
		for i := range 4096 {
			h ^= uint64(i)
			h *= 1099511628211
		}
	}
	return h
}

// calibrate returns how many rounds of burn take about work on this
// machine (0 for no work). It keeps the fastest of several short samples,
// so that instances starting together on a busy machine do not each
// measure the others' load and do less work per request.
func calibrate(work time.Duration) int {
	if work <= 0 {
		return 0
	}
	const sample = 64
	best := time.Duration(1<<63 - 1)
	for range 20 {
		start := time.Now()
		runtime.KeepAlive(burn(sample))
		best = min(best, time.Since(start))
	}
	perRound := max(best/sample, 1)
	return max(1, int(work/perRound))
}

// echo copies the connection back to itself until the client half-closes,
// then finishes writing and closes.
func echo(conn net.Conn) {
	defer conn.Close()
	if _, err := io.Copy(conn, conn); err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func serveHTTP(ln net.Listener, readyAt time.Time) error {
	greeting := os.Getenv("GREETING")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if time.Now().Before(readyAt) {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s", greeting)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// serveHold accepts connections and keeps them open without writing a byte,
// closing each only once its client has closed.
func serveHold(ln net.Listener) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go hold(conn)
	}
}

func hold(conn net.Conn) {
	defer conn.Close()
	_, _ = io.Copy(io.Discard, conn)
}

// get is a healthcheck client for images without a shell or curl (a
// container FROM scratch): it GETs url and fails unless the answer is 2xx.
func get(url string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// printLimits prints the limits a wrapper or the daemon set on this process:
// "limits nofile=N nproc=N umask=0NNN uid=N gid=N".
func printLimits() {
	var nofile, nproc syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	_ = syscall.Getrlimit(6, &nproc) // RLIMIT_NPROC on Linux
	mask := syscall.Umask(0)
	syscall.Umask(mask)
	fmt.Printf("limits nofile=%d nproc=%d umask=%#o uid=%d gid=%d\n", nofile.Cur, nproc.Cur, mask, os.Getuid(), os.Getgid())
}
