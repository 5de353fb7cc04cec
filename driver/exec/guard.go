package execdriver

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/dynapm/dynapm/appfile"
)

// guardScript runs the program with the app's limits and umask: a shell is
// the one portable way to set them on the child alone (setrlimit in the
// daemon would apply to the daemon too, and prlimit after start races with
// the program). It is only used when an app sets limits or umask. Each
// setting must succeed, or the program does not run: an app that asked for
// a limit never runs without it. dash names the process limit -p, bash -u.
// $0 is the program, "$@" its arguments.
func guardScript(spec *appfile.Spec) string {
	s := ""
	if n := spec.Limits.NoFile; n > 0 {
		s += "ulimit -n " + strconv.Itoa(n) + " || exit 126; "
	}
	if n := spec.Limits.NProc; n > 0 {
		s += "{ ulimit -u " + strconv.Itoa(n) + " 2>/dev/null || ulimit -p " + strconv.Itoa(n) + "; } || exit 126; "
	}
	if spec.Umask != "" {
		s += "umask " + spec.Umask + " || exit 126; "
	}
	return s + `exec "$0" "$@"`
}

// applyGuards makes cmd run as the app's user and group and under its
// limits and umask. Without those keys it leaves cmd alone.
func applyGuards(cmd *exec.Cmd, spec *appfile.Spec) error {
	if spec.User != "" || spec.Group != "" {
		cred, err := Credential(spec.User, spec.Group)
		if err != nil {
			return err
		}
		cmd.SysProcAttr.Credential = cred
	}
	if spec.Limits != (appfile.Limits{}) || spec.Umask != "" {
		cmd.Args = append([]string{"sh", "-c", guardScript(spec), cmd.Path}, cmd.Args[1:]...)
		cmd.Path = "/bin/sh"
	}
	return nil
}

// Credential resolves user and group (names or numeric ids) into the
// account an app's program runs as. A user alone runs with its primary
// group; no supplementary group is kept. Only root can switch: any other
// daemon gets a clear error. A bare numeric uid runs with the gid of the
// same number unless group says otherwise. Exported so that the root
// daemon's check of who owns an app file resolves exactly as the start.
func Credential(userName, groupName string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("user and group need a daemon running as root (running as uid %d)", os.Geteuid())
	}
	cred := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Groups: []uint32{}}
	if userName != "" {
		uid, gid, err := LookupUser(userName)
		if err != nil {
			return nil, err
		}
		cred.Uid, cred.Gid = uid, gid
	}
	if groupName != "" {
		gid, err := LookupGroup(groupName)
		if err != nil {
			return nil, err
		}
		cred.Gid = gid
	}
	return cred, nil
}
