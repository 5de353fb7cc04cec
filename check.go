package main

import (
	"fmt"
	"io"
	"os"

	"github.com/dynapm/dynapm/appfile"
)

// checkCommand validates every app file and prints one line per problem.
func checkCommand(args []string, stdout, stderr io.Writer) int {
	s, code, ok := parseSettings("check", args, stderr)
	if !ok {
		return code
	}
	specs, errs := appfile.LoadDir(s.AppsDir)
	specs, errs = modeErrors(s.AppsDir, specs, errs, os.Geteuid())
	for _, err := range errs {
		fmt.Fprintln(stdout, err)
	}
	if len(errs) > 0 {
		fmt.Fprintf(stdout, "%d problem(s); %d app file(s) valid in %s\n", len(errs), len(specs), s.AppsDir)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %d app file(s) valid in %s\n", len(specs), s.AppsDir)
	return 0
}

// modeErrors applies, when euid is root, the checks a daemon running as
// root makes (appsdir.Config.OwnerWritableOnly and ownerError), with the
// same words: an apps directory or app file that group or others can
// write is refused, and so is an app file root does not own unless the app
// runs as its owner. It returns the specs the daemon would serve and errs
// with the refusals added.
func modeErrors(dir string, specs []*appfile.Spec, errs []error, euid int) ([]*appfile.Spec, []error) {
	if euid != 0 {
		return specs, errs
	}
	if err := appfile.CheckNotWritableByOthers(dir); err != nil {
		// The daemon does not start at all.
		errs = append([]error{err}, errs...)
	}
	kept := specs[:0:0]
	for _, s := range specs {
		if err := appfile.CheckNotWritableByOthers(s.File); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := ownerError(s); err != nil {
			errs = append(errs, err)
			continue
		}
		kept = append(kept, s)
	}
	return kept, errs
}
