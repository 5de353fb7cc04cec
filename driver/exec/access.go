package execdriver

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// CheckEnter fails when the account cred cannot enter dir, the working
// directory of an app's program (the app file's directory unless dir:
// says otherwise, often private to root): exec then fails with a bare
// "permission denied" that seems to blame the program. It names the
// first directory on the way that the account may not search, judged by
// owner, group and mode (a directory with an ACL is not judged). who is
// how the app file names the account (its user:). Start calls it to
// explain a failed launch, `dynapm check` beforehand.
func CheckEnter(cred *syscall.Credential, who, dir string) error {
	if cred == nil || cred.Uid == 0 || dir == "" {
		return nil
	}
	dir = filepath.Clean(dir)
	var path string
	for _, part := range splitPath(dir) {
		path = filepath.Join(path, part)
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("working directory %s: %w", dir, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if !canSearch(st, cred) && !hasACL(path) {
			return fmt.Errorf("user %q cannot enter %s (mode %04o, owner %s) on the way to its working directory %s; "+
				"set dir: in the app file to a directory that user can enter (without dir:, it is the app file's directory)",
				who, path, fi.Mode().Perm(), ownerName(st.Uid), dir)
		}
	}
	return nil
}

// splitPath returns "/" and then each element of the absolute path dir.
func splitPath(dir string) []string {
	var parts []string
	for d := dir; ; d = filepath.Dir(d) {
		parts = append(parts, filepath.Base(d))
		if d == filepath.Dir(d) {
			break
		}
	}
	parts[len(parts)-1] = "/"
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return parts
}

// canSearch reports whether cred may search (x) a directory with st's
// owner and mode, as the kernel decides for an account without
// supplementary groups (the program runs with none).
func canSearch(st *syscall.Stat_t, cred *syscall.Credential) bool {
	switch {
	case st.Uid == cred.Uid:
		return st.Mode&0o100 != 0
	case st.Gid == cred.Gid:
		return st.Mode&0o010 != 0
	}
	return st.Mode&0o001 != 0
}

// hasACL reports whether path has an access ACL, which may let the
// account in where the mode bits do not: CheckEnter then does not judge.
func hasACL(path string) bool {
	n, err := syscall.Getxattr(path, "system.posix_acl_access", nil)
	return err == nil && n > 0
}

func ownerName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return "uid " + id
}
