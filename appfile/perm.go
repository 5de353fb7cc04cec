package appfile

import (
	"fmt"
	"os"
)

// CheckNotWritableByOthers refuses an app file or apps directory that users
// other than its owner may write to. A daemon running as root runs what
// the app files say: anyone who can edit one (or add one to the directory)
// could run anything as root. The error says how to fix the mode.
func CheckNotWritableByOthers(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &FieldError{File: path, Msg: fmt.Sprintf("checking permissions: %v", unwrapPathError(err))}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		what := "app file"
		if fi.IsDir() {
			what = "apps directory"
		}
		return &FieldError{File: path, Msg: fmt.Sprintf(
			"%s is writable by group or others (mode %#o) and dynapm runs as root: fix it with: chmod go-w %s", what, perm, path)}
	}
	return nil
}
