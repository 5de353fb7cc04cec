package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// inheritedListeners returns the listening sockets passed as systemd's
// socket activation passes them: descriptors 3 to 3+LISTEN_FDS-1, meant
// for this process if LISTEN_PID is its pid.
func inheritedListeners() ([]net.Listener, error) {
	if pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID")); pid != os.Getpid() {
		return nil, fmt.Errorf("LISTEN_PID %q is not this process (%d)", os.Getenv("LISTEN_PID"), os.Getpid())
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("LISTEN_FDS %q: expected a count of 1 or more", os.Getenv("LISTEN_FDS"))
	}
	var lns []net.Listener
	for fd := 3; fd < 3+n; fd++ {
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd))
		ln, err := net.FileListener(f)
		f.Close() // FileListener holds a duplicate
		if err != nil {
			return nil, fmt.Errorf("descriptor %d: %w", fd, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// lingerOnTerm closes lns at the first SIGTERM, then exits 0 after linger:
// a server that stops accepting and finishes what it serves.
func lingerOnTerm(lns []net.Listener, linger time.Duration) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
	for _, ln := range lns {
		ln.Close()
	}
	fmt.Println("testapp: stopping")
	time.Sleep(linger)
	os.Exit(0)
}

// helloListener writes "testapp pid=PID\n" to every connection it accepts,
// so that a test knows which process served it.
type helloListener struct{ net.Listener }

func (l helloListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		fmt.Fprintf(c, "testapp pid=%d\n", os.Getpid())
	}
	return c, err
}

// idleExit exits the process once no connection has been open for its
// delay (0: never).
type idleExit struct {
	delay time.Duration
	mu    sync.Mutex
	open  int
	timer *time.Timer
}

func newIdleExit(d time.Duration) *idleExit {
	e := &idleExit{delay: d}
	if d > 0 {
		e.timer = time.AfterFunc(d, e.fire)
	}
	return e
}

func (e *idleExit) fire() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.open == 0 {
		fmt.Println("testapp: idle, exiting")
		os.Exit(0)
	}
}

// wrap counts ln's connections.
func (e *idleExit) wrap(ln net.Listener) net.Listener {
	if e.delay <= 0 {
		return ln
	}
	return idleListener{ln, e}
}

type idleListener struct {
	net.Listener
	e *idleExit
}

func (l idleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.e.mu.Lock()
	l.e.open++
	l.e.timer.Stop()
	l.e.mu.Unlock()
	return &idleConn{Conn: c, e: l.e}, nil
}

type idleConn struct {
	net.Conn
	e    *idleExit
	once sync.Once
}

func (c *idleConn) Close() error {
	c.once.Do(func() {
		c.e.mu.Lock()
		c.e.open--
		if c.e.open == 0 {
			c.e.timer.Reset(c.e.delay)
		}
		c.e.mu.Unlock()
	})
	return c.Conn.Close()
}
