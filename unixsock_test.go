package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/trust"
	"github.com/dynapm/dynapm/l4"
)

func TestUnixRoutesResolveOwnersAndTheUpstreamsUser(t *testing.T) {
	file := filepath.Join(t.TempDir(), "web.yaml")
	euid := os.Geteuid()
	listen := &appfile.Spec{Name: "web", File: file, Listen: []string{"unix:/run/web.sock"},
		Socket: appfile.Socket{Mode: 0o660, User: "0", Group: "root"}, Upstream: "unix:" + filepath.Join(t.TempDir(), "web.sock")}
	picked := &appfile.Spec{Name: "pick", File: file, Listen: []string{"127.0.0.1:80"}, Command: []string{"prog", "$SOCKET"}}
	badUser := &appfile.Spec{Name: "bad", File: file, Listen: []string{"unix:/run/bad.sock"}, Socket: appfile.Socket{User: "no-such-user-here"}}
	long := &appfile.Spec{Name: strings.Repeat("a", 90), File: file, Listen: []string{":80"}, Command: []string{"prog", "${SOCKET}"}}
	routes, errs := unixRoutes([]*appfile.Spec{listen, picked, badUser, long}, "/state", trust.Checker{UID: uint32(euid)})

	if got, want := routes[listen], (unixRoute{socket: l4.SocketFile{Mode: 0o660, UID: 0, GID: 0}, upstream: listen.UnixUpstream(), upstreamUID: uint32(euid)}); got != want {
		t.Errorf("web: %+v, want %+v", got, want)
	}
	if got := routes[picked]; got.upstream != "/state/sockets/pick.sock" || got.upstreamUID != uint32(euid) || got.socket != (l4.SocketFile{}) {
		t.Errorf("pick: %+v", got)
	}
	if len(errs) != 2 {
		t.Fatalf("want 2 refusals (bad, long), got %v", errs)
	}
	for i, want := range []struct{ app, field, msg string }{
		{"bad", "socket_user", `looking up user "no-such-user-here"`},
		{long.Name, "command", "over the 107 bytes a socket path may have"},
	} {
		var fe *appfile.FieldError
		if errs[i].App != want.app || !errors.As(errs[i].Err, &fe) || fe.Field != want.field || !strings.Contains(fe.Msg, want.msg) {
			t.Errorf("refusal %d: %s %v; want %s on %s: %q", i, errs[i].App, errs[i].Err, want.app, want.field, want.msg)
		}
	}
}

// The attack on a unix: upstream: whoever may write its directory plants
// a symlink to a socket root listens on (/run/docker.sock). The kernel's
// word on the listener (SO_PEERCRED) cannot catch it for an app run as
// root, nor a socket of the app's own user elsewhere, so such a directory
// is refused at load, for an app run as root and for one with user:,
// naming the file, the field and the fix; the program's own directory is
// accepted.
func TestUnixUpstreamInADirectoryOthersMayChangeIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: user: and a root-owned socket")
	}
	const nobody = 65534
	dir := t.TempDir()
	victim := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", victim)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	open := filepath.Join(dir, "open")
	own := filepath.Join(dir, "own")
	for _, d := range []string{open, own} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(open, 0o1777); err != nil { // as /tmp is
		t.Fatal(err)
	}
	if err := os.Chown(own, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(open, "app.sock")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "a.yaml")
	planted := "unix:" + filepath.Join(open, "app.sock")
	rootApp := &appfile.Spec{Name: "root", File: file, Listen: []string{":80"}, Upstream: planted}
	userApp := &appfile.Spec{Name: "user", File: file, Listen: []string{":80"}, Upstream: planted, User: "nobody"}
	ownApp := &appfile.Spec{Name: "own", File: file, Listen: []string{":80"}, Upstream: "unix:" + filepath.Join(own, "app.sock"), User: "nobody"}
	made := &appfile.Spec{Name: "made", File: file, Listen: []string{":80"}, Upstream: "unix:" + filepath.Join(own, "later", "app.sock"), User: "nobody"}
	rootInOwn := &appfile.Spec{Name: "rootown", File: file, Listen: []string{":80"}, Upstream: "unix:" + filepath.Join(own, "app.sock")}
	routes, errs := unixRoutes([]*appfile.Spec{rootApp, userApp, ownApp, made, rootInOwn}, "/state", trust.Checker{UID: 0})
	if got := routes[ownApp]; got.upstream != filepath.Join(own, "app.sock") || got.upstreamUID != nobody {
		t.Errorf("the program's own directory: route %+v, want its upstream run as uid %d", got, nobody)
	}
	if _, ok := routes[made]; !ok {
		t.Errorf("a directory the program makes in its own is refused")
	}
	want := map[string]string{
		"root":    "directory of the unix: upstream socket " + open + " is writable by group or others (mode 0777); fix it with: chmod go-w " + open,
		"user":    "directory of the unix: upstream socket " + open + " is writable by group or others (mode 0777)",
		"rootown": "directory of the unix: upstream socket " + own + " is owned by nobody (uid 65534), not root; fix it with: chown root " + own,
	}
	if len(errs) != len(want) {
		t.Fatalf("refusals %v, want %d", errs, len(want))
	}
	for _, ae := range errs {
		var fe *appfile.FieldError
		if !errors.As(ae.Err, &fe) || fe.File != file || fe.Field != "upstream" || !strings.Contains(fe.Msg, want[ae.App]) || want[ae.App] == "" {
			t.Errorf("%s refused with %v; want %s: upstream: %q", ae.App, ae.Err, file, want[ae.App])
		}
	}
}
