package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/appsdir"
	execdriver "github.com/dynapm/dynapm/driver/exec"
	"github.com/dynapm/dynapm/internal/trust"
	"github.com/dynapm/dynapm/l4"
	"github.com/dynapm/dynapm/lifecycle"
)

// unixRoute is what the routes of one app need of its socket files: how
// its unix: listen sockets are made, and where its program serves when
// that is a socket file, with the uid it runs as (whom l4 expects to
// find listening there).
type unixRoute struct {
	socket      l4.SocketFile
	upstream    string
	upstreamUID uint32
}

// unixRoutes resolves, for every spec with a socket file, socket_user and
// socket_group to ids and the user its program runs as, for a daemon
// whose checker is c; the specs it cannot resolve, or whose unix:
// upstream lies where others could swap it (upstreamDirError), are
// refused, naming the field.
func unixRoutes(specs []*appfile.Spec, stateDir string, c trust.Checker) (map[*appfile.Spec]unixRoute, []appsdir.AppError) {
	euid := int(c.UID)
	out := map[*appfile.Spec]unixRoute{}
	var errs []appsdir.AppError
	for _, s := range specs {
		var u unixRoute
		fail := func(field string, err error) {
			errs = append(errs, appsdir.AppError{App: s.Name, Err: &appfile.FieldError{File: s.File, Field: field, Msg: err.Error()}})
		}
		if s.HasUnixListen() {
			u.socket = l4.SocketFile{Mode: os.FileMode(s.Socket.Mode & 0o777), UID: -1, GID: -1}
			if s.Socket.User != "" {
				uid, _, err := execdriver.LookupUser(s.Socket.User)
				if err != nil {
					fail("socket_user", err)
					continue
				}
				u.socket.UID = int(uid)
			}
			if s.Socket.Group != "" {
				gid, err := execdriver.LookupGroup(s.Socket.Group)
				if err != nil {
					fail("socket_group", err)
					continue
				}
				u.socket.GID = int(gid)
			}
		}
		switch {
		case s.UnixUpstream() != "":
			u.upstream = s.UnixUpstream()
		case s.PicksSocket():
			u.upstream = lifecycle.SocketPath(stateDir, s.Name)
			if n := len(u.upstream); n > appfile.MaxSocketPath {
				fail("command", fmt.Errorf("$SOCKET would be %s, %d bytes, over the %d bytes a socket path may have; use a shorter state directory or app name",
					u.upstream, n, appfile.MaxSocketPath))
				continue
			}
		}
		if u.upstream != "" {
			uid, err := programUID(s, euid)
			if err != nil {
				fail("user", err)
				continue
			}
			u.upstreamUID = uid
			if err := upstreamDirError(s, c, uid); err != nil {
				errs = append(errs, appsdir.AppError{App: s.Name, Err: err})
				continue
			}
		}
		out[s] = u
	}
	return out, errs
}

// upstreamDirError refuses a unix: upstream whose directory (or one above
// it) anyone but root, the daemon's user and uid, the user the app's
// program runs as, could change: whoever could would put there a symlink
// to, or a socket of, whatever they like the daemon to connect the app's
// clients to, for the kernel's word on who listens (SO_PEERCRED) cannot
// tell the app's socket from another of its user's (/run/docker.sock for
// an app run as root). $SOCKET, in the private state directory, is not
// judged.
func upstreamDirError(s *appfile.Spec, c trust.Checker, uid uint32) error {
	p := s.UnixUpstream()
	if p == "" {
		return nil
	}
	if err := c.AppDir(filepath.Dir(p), upstreamDirWhat, uid); err != nil {
		return &appfile.FieldError{File: s.File, Field: "upstream", Msg: err.Error()}
	}
	return nil
}

// upstreamDirWhat names the directory of a unix: upstream in trust errors.
const upstreamDirWhat = "directory of the unix: upstream socket"

// programUID is the uid s's program runs as: its user:, or the daemon's
// (euid). It is whom DynaPM expects to listen on the app's socket file
// (l4.Route.UnixUpstreamUID, lifecycle.Config.SocketOwner).
func programUID(s *appfile.Spec, euid int) (uint32, error) {
	if s.User == "" {
		return uint32(euid), nil
	}
	cred, err := execdriver.Credential(s.User, s.Group)
	if err != nil {
		return 0, err
	}
	return cred.Uid, nil
}
