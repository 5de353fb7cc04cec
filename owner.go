package main

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/appsdir"
	execdriver "github.com/dynapm/dynapm/driver/exec"
)

// ownerError is, for a daemon running as root, the refusal of an app file
// owned by a user other than root, as sshd and cron refuse such files: its
// owner could otherwise make root run anything. The one exception is an
// app that runs as its owner, so that the file gives its owner nothing it
// did not have: user: set to the owner, group: (if any) one of the owner's
// groups, and no driver other than exec (the others act as root; the
// app's jobs run as its user, like its program). nil for a file root owns.
func ownerError(s *appfile.Spec) error {
	fi, err := os.Stat(s.File)
	if err != nil {
		return &appfile.FieldError{File: s.File, Msg: fmt.Sprintf("checking the owner: %v", err)}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	owner := ownerName(st.Uid)
	refuse := func(field, why, orFix string) error {
		return &appfile.FieldError{File: s.File, Field: field, Msg: fmt.Sprintf(
			"app file is owned by %s, not root, and dynapm runs as root: %s; fix it with: chown root %s%s", owner, why, s.File, orFix)}
	}
	if s.User == "" {
		return refuse("", fmt.Sprintf("%s could make root run anything", owner), fmt.Sprintf(", or set user: %s to run the app as its owner", owner))
	}
	cred, err := execdriver.Credential(s.User, s.Group)
	if err != nil {
		return refuse("user", err.Error(), "")
	}
	if cred.Uid != st.Uid {
		return refuse("user", fmt.Sprintf("the app would run as uid %d, not as the file's owner", cred.Uid), fmt.Sprintf(", or set user: %s", owner))
	}
	groups, err := groupsOf(st.Uid)
	if err != nil {
		return refuse("group", err.Error(), "")
	}
	if !slices.Contains(groups, cred.Gid) {
		field := "group"
		if s.Group == "" {
			field = "user" // a bare uid's gid of the same number
		}
		return refuse(field, fmt.Sprintf("the app would run with gid %d, which is not one of %s's groups", cred.Gid, owner), fmt.Sprintf(", or set group: to one of %s's groups", owner))
	}
	if s.Driver != "" && s.Driver != appfile.DriverExec {
		return refuse("driver", fmt.Sprintf("driver: %s acts as the daemon's user (root), not as user: %s", s.Driver, s.User), "")
	}
	return nil
}

// ownerName is "NAME (uid N)", or "uid N" for a uid the password database
// does not know.
func ownerName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("%s (uid %s)", u.Username, id)
	}
	return "uid " + id
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

// ownerErrors is ownerError for every spec, as an apply refusal.
func ownerErrors(specs []*appfile.Spec, euid int) []appsdir.AppError {
	if euid != 0 {
		return nil
	}
	var errs []appsdir.AppError
	for _, s := range specs {
		if err := ownerError(s); err != nil {
			errs = append(errs, appsdir.AppError{App: s.Name, Err: err})
		}
	}
	return errs
}
