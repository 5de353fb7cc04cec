package execdriver

import (
	"fmt"
	"math"
	"os/user"
	"strconv"
)

// LookupUser resolves a user name or numeric id into its uid and primary
// gid. A bare number need not be in the password database (it is then
// its own gid too); a name is looked up, then tried as an id. It serves
// both user: (Credential) and socket_user, so that both read a user
// alike.
func LookupUser(name string) (uid, gid uint32, err error) {
	if n, ok := parseID(name); ok {
		return n, n, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return 0, 0, fmt.Errorf("looking up user %q: %w", name, err)
		}
	}
	uid, ok1 := parseID(u.Uid)
	gid, ok2 := parseID(u.Gid)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("user %q has a uid or gid that is not a number below %d: %s, %s", name, uint32(math.MaxUint32), u.Uid, u.Gid)
	}
	return uid, gid, nil
}

// LookupGroup resolves a group name or numeric id into its gid, as
// LookupUser does a user (group: and socket_group).
func LookupGroup(name string) (uint32, error) {
	if n, ok := parseID(name); ok {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		if g, err = user.LookupGroupId(name); err != nil {
			return 0, fmt.Errorf("looking up group %q: %w", name, err)
		}
	}
	gid, ok := parseID(g.Gid)
	if !ok {
		return 0, fmt.Errorf("group %q has a gid that is not a number below %d: %s", name, uint32(math.MaxUint32), g.Gid)
	}
	return gid, nil
}

// parseID reads a numeric uid or gid: 32 bits, as the kernel's, less
// 4294967295, which chown and setuid read as "no change" (-1).
func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}
