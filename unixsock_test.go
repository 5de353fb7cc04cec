package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/l4"
)

func TestUnixRoutesResolveOwnersAndTheUpstreamsUser(t *testing.T) {
	file := filepath.Join(t.TempDir(), "web.yaml")
	euid := os.Geteuid()
	listen := &appfile.Spec{Name: "web", File: file, Listen: []string{"unix:/run/web.sock"},
		Socket: appfile.Socket{Mode: 0o660, User: "0", Group: "root"}, Upstream: "unix:/srv/web.sock"}
	picked := &appfile.Spec{Name: "pick", File: file, Listen: []string{"127.0.0.1:80"}, Command: []string{"prog", "$SOCKET"}}
	badUser := &appfile.Spec{Name: "bad", File: file, Listen: []string{"unix:/run/bad.sock"}, Socket: appfile.Socket{User: "no-such-user-here"}}
	long := &appfile.Spec{Name: strings.Repeat("a", 90), File: file, Listen: []string{":80"}, Command: []string{"prog", "${SOCKET}"}}
	routes, errs := unixRoutes([]*appfile.Spec{listen, picked, badUser, long}, "/state", euid)

	if got, want := routes[listen], (unixRoute{socket: l4.SocketFile{Mode: 0o660, UID: 0, GID: 0}, upstream: "/srv/web.sock", upstreamUID: uint32(euid)}); got != want {
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
