package execdriver

import (
	"strings"
	"testing"
)

// user: and socket_user read a user alike: a name, a numeric id (its own
// gid too, in the password database or not), and never 4294967295, which
// chown and setuid read as "no change".
func TestLookupUserAndGroupReadNamesAndIDs(t *testing.T) {
	if uid, gid, err := LookupUser("root"); err != nil || uid != 0 || gid != 0 {
		t.Errorf("root: %d %d %v", uid, gid, err)
	}
	if uid, gid, err := LookupUser("4000000000"); err != nil || uid != 4000000000 || gid != 4000000000 {
		t.Errorf("a 32-bit uid: %d %d %v", uid, gid, err)
	}
	if _, _, err := LookupUser("4294967295"); err == nil || !strings.Contains(err.Error(), `looking up user "4294967295"`) {
		t.Errorf("uid -1: %v", err)
	}
	if gid, err := LookupGroup("root"); err != nil || gid != 0 {
		t.Errorf("group root: %d %v", gid, err)
	}
	if gid, err := LookupGroup("3000000000"); err != nil || gid != 3000000000 {
		t.Errorf("a 32-bit gid: %d %v", gid, err)
	}
	if _, err := LookupGroup("no-such-group-here"); err == nil || !strings.Contains(err.Error(), `looking up group "no-such-group-here"`) {
		t.Errorf("an unknown group: %v", err)
	}
}
