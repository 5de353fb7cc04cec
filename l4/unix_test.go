package l4

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/unixaddr"
)

// defaultSocket is a SocketFile of mode 0666 that leaves the owner alone.
var defaultSocket = SocketFile{Mode: 0o666, UID: -1, GID: -1}

// unixEcho is a real Unix stream socket server at path that echoes, as a
// program serving on a socket file would; closed at the end of the test.
func unixEcho(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.(*net.UnixConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

func dialUnix(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func lstatMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func TestUnixListenHoldsTheFirstConnectionWhileTheAppWakes(t *testing.T) {
	w := newTestWaker(t)
	app := w.add("web", &testApp{gate: make(chan struct{}), start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	path := filepath.Join(t.TempDir(), "web.sock")
	key := unixaddr.Prefix + path
	if errs := s.Apply(map[string][]Route{key: {{App: "web", Socket: SocketFile{Mode: 0o660, UID: -1, GID: -1}}}}); errs != nil {
		t.Fatal(errs)
	}
	if m := lstatMode(t, path); m.Type() != os.ModeSocket || m.Perm() != 0o660 {
		t.Fatalf("socket file mode %v, want a socket of 0660", m)
	}
	c := dialUnix(t, path)
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connection held in Wake", func() bool { return w.waiting.Load() == 1 })
	close(app.gate)
	buf := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "first" {
		t.Fatalf("read %q, %v after the wake", buf, err)
	}
	// Warm: a second connection goes straight through.
	warm := dialUnix(t, path)
	roundTrip(t, warm, "warm")
	warm.Close()
	c.Close()
	waitFor(t, "both leases released", func() bool { return w.releases.Load() == 2 })

	// The listen goes: its file goes with it.
	if errs := s.Apply(map[string][]Route{}); errs != nil {
		t.Fatal(errs)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file still there after its listen was removed: %v", err)
	}
}

func TestTCPListenToUnixUpstream(t *testing.T) {
	w := newTestWaker(t)
	// The lease names an address nobody dials: the route's socket file wins.
	w.add("sock", &testApp{upstream: netip.MustParseAddrPort("127.0.0.1:1")})
	up := filepath.Join(t.TempDir(), "up.sock")
	unixEcho(t, up)
	s, _ := newServer(t, w)
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {{App: "sock", UnixUpstream: up, UnixUpstreamUID: uint32(os.Geteuid())}}}); errs != nil {
		t.Fatal(errs)
	}
	addr := s.Addr("127.0.0.1:0").String()
	for i := range 3 {
		roundTrip(t, dialTCP(t, addr), strings.Repeat("x", 1+i*100000))
	}
}

func TestUnixListenToUnixUpstream(t *testing.T) {
	w := newTestWaker(t)
	w.add("sock", &testApp{upstream: netip.MustParseAddrPort("127.0.0.1:1")})
	dir := t.TempDir()
	up := filepath.Join(dir, "up.sock")
	unixEcho(t, up)
	s, _ := newServer(t, w)
	path := filepath.Join(dir, "in.sock")
	if errs := s.Apply(map[string][]Route{unixaddr.Prefix + path: {{App: "sock", Socket: defaultSocket, UnixUpstream: up, UnixUpstreamUID: uint32(os.Geteuid())}}}); errs != nil {
		t.Fatal(errs)
	}
	roundTrip(t, dialUnix(t, path), "hello")
	roundTrip(t, dialUnix(t, path), strings.Repeat("bulk", 100000))
}

// A unix upstream whose listener is not the app's user is not connected
// to: a symlink to another program's socket (docker.sock) must not let the
// app's clients talk to it through the daemon.
func TestUnixUpstreamOfAnotherUserIsRefused(t *testing.T) {
	w := newTestWaker(t)
	w.add("sock", &testApp{upstream: netip.MustParseAddrPort("127.0.0.1:1")})
	up := filepath.Join(t.TempDir(), "up.sock")
	unixEcho(t, up)
	s, logs := newServer(t, w)
	other := uint32(os.Geteuid()) + 1
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {{App: "sock", UnixUpstream: up, UnixUpstreamUID: other}}}); errs != nil {
		t.Fatal(errs)
	}
	c := dialTCP(t, s.Addr("127.0.0.1:0").String())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("secret"))
	if n, err := c.Read(make([]byte, 16)); err == nil {
		t.Fatalf("read %d bytes through a socket of another user", n)
	}
	waitFor(t, "the refusal logged", func() bool { return strings.Contains(logs.String(), "the socket's listener is not the app's user") })
}

// A symlink as the last component of a unix: upstream is not followed,
// even to a socket of the app's own user: the file is opened O_PATH |
// O_NOFOLLOW and connected to through /proc/self/fd.
func TestUnixUpstreamSymlinkIsNotFollowed(t *testing.T) {
	w := newTestWaker(t)
	w.add("sock", &testApp{upstream: netip.MustParseAddrPort("127.0.0.1:1")})
	dir := t.TempDir()
	target := filepath.Join(dir, "target.sock")
	unixEcho(t, target)
	up := filepath.Join(dir, "up.sock")
	if err := os.Symlink(target, up); err != nil {
		t.Fatal(err)
	}
	s, logs := newServer(t, w)
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {{App: "sock", UnixUpstream: up, UnixUpstreamUID: uint32(os.Geteuid())}}}); errs != nil {
		t.Fatal(errs)
	}
	c := dialTCP(t, s.Addr("127.0.0.1:0").String())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("secret"))
	if n, err := c.Read(make([]byte, 16)); err == nil {
		t.Fatalf("read %d bytes through a symlink", n)
	}
	waitFor(t, "the refusal logged", func() bool {
		return strings.Contains(logs.String(), up+" is a symlink, which DynaPM does not follow to a socket")
	})
}

func TestUnixListenReplacesAStaleSocket(t *testing.T) {
	w := newTestWaker(t)
	w.add("web", &testApp{start: func() *backend { return startBackend(t, echo) }})
	path := filepath.Join(t.TempDir(), "web.sock")
	// A socket file nobody listens on, as a killed daemon leaves.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	s, _ := newServer(t, w)
	if errs := s.Apply(map[string][]Route{unixaddr.Prefix + path: {{App: "web", Socket: defaultSocket}}}); errs != nil {
		t.Fatal(errs)
	}
	roundTrip(t, dialUnix(t, path), "after the stale one")
}

// What is at the listen path and is not a stale socket is never removed
// nor followed: a regular file, a symlink (to a file an attacker wants
// gone), a socket another program listens on.
func TestUnixListenLeavesWhatIsNotAStaleSocket(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "regular.sock")
	if err := os.WriteFile(regular, []byte("keep me too"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	danglingTarget := filepath.Join(dir, "made-through-the-link")
	dangling := filepath.Join(dir, "dangling.sock")
	if err := os.Symlink(danglingTarget, dangling); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "live.sock")
	unixEcho(t, live)

	w := newTestWaker(t)
	w.add("web", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	for _, c := range []struct{ path, want string }{
		{regular, "is a regular file, not a socket"},
		{link, "is a symlink, not a socket"},
		{dangling, "is a symlink, not a socket"},
		{live, "another program listens on this socket"},
	} {
		key := unixaddr.Prefix + c.path
		errs := s.Apply(map[string][]Route{key: {{App: "web", Socket: defaultSocket}}})
		if err := errs[key]; err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Apply error %v, want %q", c.path, err, c.want)
		}
	}
	for _, p := range []string{victim, regular} {
		if b, err := os.ReadFile(p); err != nil || !strings.HasPrefix(string(b), "keep me") {
			t.Errorf("%s changed: %q, %v", p, b, err)
		}
	}
	if m := lstatMode(t, link); m.Type() != os.ModeSymlink {
		t.Errorf("the symlink was replaced: %v", m)
	}
	if _, err := os.Lstat(danglingTarget); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a socket was made through the dangling symlink: %v", err)
	}
	roundTrip(t, dialUnix(t, live), "still served by its own program")
}

func TestUnixListenInARefusedDirectoryIsNotMade(t *testing.T) {
	w := newTestWaker(t)
	w.add("web", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	dir := t.TempDir()
	s.CheckSocketDir = func(d string) error {
		if d != dir {
			t.Errorf("CheckSocketDir(%q), want %q", d, dir)
		}
		return errors.New("directory writable by others")
	}
	path := filepath.Join(dir, "web.sock")
	key := unixaddr.Prefix + path
	errs := s.Apply(map[string][]Route{key: {{App: "web", Socket: defaultSocket}}})
	if err := errs[key]; err == nil || !strings.Contains(err.Error(), "directory writable by others") {
		t.Fatalf("Apply error %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file made in a refused directory: %v", err)
	}
}

func TestUnixListenModeChangeRemakesTheSocket(t *testing.T) {
	w := newTestWaker(t)
	w.add("web", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	path := filepath.Join(t.TempDir(), "web.sock")
	key := unixaddr.Prefix + path
	for _, mode := range []os.FileMode{0o666, 0o600} {
		if errs := s.Apply(map[string][]Route{key: {{App: "web", Socket: SocketFile{Mode: mode, UID: -1, GID: -1}}}}); errs != nil {
			t.Fatal(errs)
		}
		if m := lstatMode(t, path); m.Perm() != mode {
			t.Fatalf("mode %v, want %v", m.Perm(), mode)
		}
		roundTrip(t, dialUnix(t, path), "ok")
	}
}
