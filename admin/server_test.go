package admin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/internal/trust"
)

func TestServeRefusesStateDirWritableByOthers(t *testing.T) {
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	_, err := Serve(Config{StateDir: dir, Controller: newTestController()})
	if err == nil {
		t.Fatal("Serve accepted a group-writable state directory")
	}
	for _, want := range []string{dir, "chmod 700"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// The state directory is the daemon's alone: owned by another user, or
// below a directory another user could change, it is refused, and the
// error names the directory at fault and the fix.
func TestServeRefusesAStateDirAnotherUserControls(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving the directory to another user needs root")
	}
	dir := shortDir(t)
	testutil.ChownNobody(t, dir)
	_, err := Serve(Config{StateDir: dir, Controller: newTestController()})
	for _, want := range []string{"state directory " + dir + " is owned by nobody (uid 65534), not root", "fix it with: chown root " + dir} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Serve on nobody's state directory: %v; want an error saying %q", err, want)
		}
	}

	parent := shortDir(t)
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	below := filepath.Join(parent, "s")
	if err := MakeStateDir(below); err == nil || !strings.Contains(err.Error(),
		parent+", on the way to the state directory "+below+", is writable by group or others (mode 0777); fix it with: chmod go-w "+parent) {
		t.Fatalf("MakeStateDir below a directory anyone can write: %v", err)
	}

	// A daemon running as nobody trusts its own directory, and root's.
	if err := checkPrivateDir(trust.Checker{UID: testutil.Nobody}, dir); err != nil {
		t.Fatalf("nobody's state directory for a daemon running as nobody: %v", err)
	}
}

func TestMakeStateDirCreatesItPrivate(t *testing.T) {
	dir := filepath.Join(shortDir(t), "a", "state")
	if err := MakeStateDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %#o, want 0700", d, st.Mode().Perm())
		}
	}
}

func TestSocketIsPrivateAndRemovedOnShutdown(t *testing.T) {
	s, _, _ := startServer(t, newTestController())
	st, err := os.Stat(s.Socket())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, want a socket with 0600", st.Mode())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.Socket()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket still there after shutdown: %v", err)
	}
}

func TestSecondDaemonOnSameStateDirIsRefused(t *testing.T) {
	s, c, _ := startServer(t, newTestController("web"))
	_, err := Serve(Config{StateDir: filepath.Dir(s.Socket()), Controller: newTestController()})
	if err == nil || !strings.Contains(err.Error(), "another dynapm") {
		t.Fatalf("second Serve: err = %v, want another dynapm is running", err)
	}
	// The first one is untouched.
	if _, err := c.Apps(context.Background()); err != nil {
		t.Fatalf("first daemon no longer answers: %v", err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	dir := shortDir(t)
	// A socket file left behind by a daemon that died: nothing listens.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s, err := Serve(Config{StateDir: dir, Controller: newTestController("web")})
	if err != nil {
		t.Fatalf("Serve with a stale socket: %v", err)
	}
	defer s.Shutdown(context.Background())
	apps, err := (&Client{Socket: s.Socket()}).Apps(context.Background())
	if err != nil || len(apps) != 1 {
		t.Fatalf("Apps = %v, %v; want one app", apps, err)
	}
}

func TestSocketSomeoneAnswersOnIsNotStolen(t *testing.T) {
	dir := shortDir(t)
	ln, err := net.Listen("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Serve(Config{StateDir: dir, Controller: newTestController()})
	if err == nil || !strings.Contains(err.Error(), "answering") {
		t.Fatalf("Serve over a live socket: err = %v", err)
	}
	if _, err := os.Lstat(SocketPath(dir)); err != nil {
		t.Fatalf("live socket was removed: %v", err)
	}
}

func TestNonSocketAtSocketPathIsNotRemoved(t *testing.T) {
	dir := shortDir(t)
	if err := os.WriteFile(SocketPath(dir), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Serve(Config{StateDir: dir, Controller: newTestController()})
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("err = %v, want not a socket", err)
	}
	if b, _ := os.ReadFile(SocketPath(dir)); string(b) != "precious" {
		t.Fatal("file at the socket path was changed")
	}
}

// A state directory whose socket path the kernel cannot bind is refused
// with the path, the limit and what to do, by the daemon and the client
// alike, rather than "bind: invalid argument".
func TestStateDirTooLongForASocketIsRefusedClearly(t *testing.T) {
	dir := shortDir(t)
	long := filepath.Join(dir, strings.Repeat("x", maxSocketPath-len(dir)-len(SocketName)-2))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	// One byte under the limit still works: the check is not too eager.
	s, err := Serve(Config{StateDir: long, Controller: newTestController()})
	if err != nil {
		t.Fatalf("socket path of %d bytes refused: %v", len(SocketPath(long)), err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	tooLong := long + "y"
	if err := os.Mkdir(tooLong, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := SocketPath(tooLong)
	_, serveErr := Serve(Config{StateDir: tooLong, Controller: newTestController()})
	_, clientErr := (&Client{Socket: sock}).Apps(context.Background())
	for who, err := range map[string]error{"Serve": serveErr, "the client": clientErr} {
		if err == nil {
			t.Fatalf("%s accepted a socket path of %d bytes", who, len(sock))
		}
		for _, want := range []string{sock, fmt.Sprintf("%d bytes, over the 107 bytes", len(sock)), "use a shorter state directory (-state DIR"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", who, err, want)
			}
		}
	}
}
