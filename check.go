package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/trust"
	"github.com/dynapm/dynapm/internal/unixaddr"
)

// checkCommand validates every app file and prints one line per problem.
func checkCommand(args []string, stdout, stderr io.Writer) int {
	s, code, ok := parseSettings("check", args, stderr)
	if !ok {
		return code
	}
	specs, errs := appfile.LoadDir(s.AppsDir)
	specs, errs = trustErrors(trust.New(s.StateDir), s.AppsDir, specs, errs)
	specs, errs = reservedErrors(ownAddresses(s.Metrics, metricsSetting(s)), specs, errs)
	runErrs, warnings, bad := runtimeProblems(specs)
	errs = append(errs, runErrs...)
	for _, err := range errs {
		fmt.Fprintln(stdout, err)
	}
	for _, w := range warnings {
		fmt.Fprintln(stdout, "warning: "+w.Error())
	}
	also := ""
	if len(warnings) > 0 {
		also = fmt.Sprintf(" (%d warning(s))", len(warnings))
	}
	if len(errs) > 0 {
		fmt.Fprintf(stdout, "%d problem(s)%s; %d app file(s) valid in %s\n", len(errs), also, len(specs)-bad, s.AppsDir)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %d app file(s) valid in %s%s\n", len(specs), s.AppsDir, also)
	return 0
}

// trustErrors makes the checks of a daemon running as c.UID (appsdir's
// Config.Trust and ownerError), with the same words: an apps directory
// that anyone but root and the daemon's user could change stops the
// daemon (and is the only refusal then), and so is an app file that is
// writable by group or others, resolves into the state directory, or is
// another user's unless the app runs as that user. It returns the specs the daemon would serve and errs with
// the refusals added. It refuses, as the daemon does (unixRoutes), a
// unix: listen or upstream socket in a directory others could change.
func trustErrors(c trust.Checker, dir string, specs []*appfile.Spec, errs []error) ([]*appfile.Spec, []error) {
	if err := c.Dir(dir, "apps directory"); err != nil {
		// The daemon does not start at all, nor judge the files: each
		// would have the directory's fault.
		return specs, append([]error{err}, errs...)
	}
	kept := specs[:0:0]
	c = c.Batch()
	for _, s := range specs {
		if err := ownerError(s, c); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := socketDirError(s, c); err != nil {
			errs = append(errs, err)
			continue
		}
		// A user: the daemon cannot resolve is reported with the others
		// (runtimeProblems, privilegeErrors).
		if uid, err := programUID(s, int(c.UID)); err == nil {
			if err := upstreamDirError(s, c, uid); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		kept = append(kept, s)
	}
	return kept, errs
}

// socketDirError refuses, as the daemon's listener does
// (l4.Server.CheckSocketDir), a unix: listen address whose directory
// anyone but root and the daemon's user could change.
func socketDirError(s *appfile.Spec, c trust.Checker) error {
	for i, l := range s.Listen {
		if p := unixaddr.Path(l); p != "" {
			if err := c.Dir(filepath.Dir(p), socketDirWhat); err != nil {
				return &appfile.FieldError{File: s.File, Field: fmt.Sprintf("listen[%d]", i), Msg: err.Error()}
			}
		}
	}
	return nil
}

// socketDirWhat names the directory of a unix: listen in trust errors.
const socketDirWhat = "directory of a unix: listen socket"

// reservedErrors refuses, as the daemon does, the apps that claim one of
// its own addresses (appfile.CheckReserved). It returns the specs left
// and errs with the refusals added.
func reservedErrors(own []appfile.Reserved, specs []*appfile.Spec, errs []error) ([]*appfile.Spec, []error) {
	kept := specs[:0:0]
	for _, s := range specs {
		if err := appfile.CheckReserved(s, own); err != nil {
			errs = append(errs, err)
			continue
		}
		kept = append(kept, s)
	}
	return kept, errs
}
