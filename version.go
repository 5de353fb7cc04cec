package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// versionCommand prints the module version and the VCS revision the
// binary was built from, as the Go toolchain recorded them.
func versionCommand(stdout io.Writer) int {
	fmt.Fprintln(stdout, versionLine())
	return 0
}

// versionLine is "dynapm VERSION (revision REV[, modified], TIME) GO OS/ARCH";
// a build without VCS information (go run, a build outside the
// repository) leaves the parentheses out.
func versionLine() string {
	version, vcs := "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		var rev, at, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
		if rev != "" {
			vcs = fmt.Sprintf(" (revision %s%s, %s)", rev, modified, at)
		}
	}
	return fmt.Sprintf("dynapm %s%s %s %s/%s", version, vcs, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
