package main

import (
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/appsdir"
	execdriver "github.com/dynapm/dynapm/driver/exec"
	"github.com/dynapm/dynapm/internal/trust"
)

// ownerError refuses an app file that a user other than root and the
// daemon's own can change (see trust.Checker.AppFile: the file, a symlink
// to it, or a directory on the way to its target, is that user's), as sshd
// and cron refuse such files: that user could otherwise make the daemon
// run anything as its user. For a daemon running as root there is one
// exception: an app that runs as the file's owner, so that the file gives
// its owner nothing they did not have: user: set to the owner, group: (if
// any) one of the owner's groups, and no driver other than exec (the
// others act as root; the app's jobs run as its user, like its program),
// and no unix: listen address (root makes and removes its socket file). A
// unix: upstream is allowed: l4 connects only to a socket its program's
// user listens on (l4.Route.UnixUpstreamUID).
// nil for a file only root and the daemon's user can change.
func ownerError(s *appfile.Spec, c trust.Checker) error {
	o, err := c.AppFile(s.File)
	if err != nil {
		return &appfile.FieldError{File: s.File, Msg: err.Error()}
	}
	if o.UID == 0 || o.UID == c.UID {
		return nil
	}
	owner := trust.UserName(o.UID)
	whose, fix := "is owned by "+owner, "chown root "+s.File
	if o.Via != "" {
		whose = fmt.Sprintf("can be changed by %s, who owns %s", owner, o.Via)
		fix = fmt.Sprintf("chown root %s (or copy the file into the apps directory)", o.Via)
	}
	if c.UID != 0 {
		daemon := trust.UserName(c.UID)
		return &appfile.FieldError{File: s.File, Msg: fmt.Sprintf(
			"app file %s, neither root nor %s, whom dynapm runs as: %s could make dynapm run anything as %s; fix it with: %s",
			whose, daemon, owner, daemon, strings.Replace(fix, "chown root", "chown "+loginName(c.UID), 1))}
	}
	refuse := func(field, why, orFix string) error {
		return &appfile.FieldError{File: s.File, Field: field, Msg: fmt.Sprintf(
			"app file %s, not root, and dynapm runs as root: %s; fix it with: %s%s", whose, why, fix, orFix)}
	}
	name := loginName(o.UID)
	if s.User == "" {
		return refuse("", fmt.Sprintf("%s could make root run anything", owner), fmt.Sprintf(", or set user: %s to run the app as its owner", name))
	}
	cred, err := execdriver.Credential(s.User, s.Group)
	if err != nil {
		return refuse("user", err.Error(), "")
	}
	if cred.Uid != o.UID {
		return refuse("user", fmt.Sprintf("the app would run as uid %d, not as the file's owner", cred.Uid), fmt.Sprintf(", or set user: %s", name))
	}
	groups, err := groupsOf(o.UID)
	if err != nil {
		return refuse("group", err.Error(), "")
	}
	if !slices.Contains(groups, cred.Gid) {
		field := "group"
		if s.Group == "" {
			field = "user" // a bare uid's gid of the same number
		}
		return refuse(field, fmt.Sprintf("the app would run with gid %d, which is not one of %s's groups", cred.Gid, owner), fmt.Sprintf(", or set group: to one of %s's groups", name))
	}
	if s.Driver != "" && s.Driver != appfile.DriverExec {
		return refuse("driver", fmt.Sprintf("driver: %s acts as the daemon's user (root), not as user: %s", s.Driver, s.User), "")
	}
	if s.HasUnixListen() {
		// Root makes, chowns and removes a unix: listen's socket file:
		// where, the file's owner would say.
		return refuse("listen", fmt.Sprintf("a unix: listen address has root make and remove a socket file where %s says", owner), ", or listen on a TCP address")
	}
	return nil
}

// loginName is uid's user name, or uid in digits (which user: and chown
// take too) when the password database does not know it.
func loginName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// groupsOf returns the gids of uid's primary and supplementary groups.
func groupsOf(uid uint32) ([]uint32, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil, fmt.Errorf("looking up the groups of the file's owner: %w", err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("looking up the groups of %s: %w", u.Username, err)
	}
	ids = append(ids, u.Gid)
	var gids []uint32
	for _, id := range ids {
		if n, err := strconv.ParseUint(id, 10, 32); err == nil {
			gids = append(gids, uint32(n))
		}
	}
	return gids, nil
}

// ownerErrors is ownerError for every spec, as apply refusals. A spec is
// what its file said when it was read, so the verdict on it holds as long
// as the spec: specs in accepted are not judged again, and those ownerError
// accepts are added to it (a refused one is judged again at each retry,
// as a chown may have fixed it).
func ownerErrors(specs []*appfile.Spec, c trust.Checker, accepted map[*appfile.Spec]bool) []appsdir.AppError {
	var errs []appsdir.AppError
	for _, s := range specs {
		if accepted[s] {
			continue
		}
		if err := ownerError(s, c); err != nil {
			errs = append(errs, appsdir.AppError{App: s.Name, Err: err})
			continue
		}
		accepted[s] = true
	}
	return errs
}
