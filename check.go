package main

import (
	"fmt"
	"io"

	"github.com/dynapm/dynapm/appfile"
)

// checkCommand validates every app file and prints one line per problem.
func checkCommand(args []string, stdout, stderr io.Writer) int {
	f := newFlags("check", stderr)
	if err := f.fs.Parse(args); err != nil {
		return 2
	}
	s, err := f.settings()
	if err != nil {
		fmt.Fprintln(stderr, "dynapm:", err)
		return 1
	}
	specs, errs := appfile.LoadDir(s.AppsDir)
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
