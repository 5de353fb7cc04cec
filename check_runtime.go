package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dynapm/dynapm/appfile"
	execdriver "github.com/dynapm/dynapm/driver/exec"
)

// runtimeProblems looks at what a valid app file needs from the machine,
// as the daemon will: errors where the daemon would fail (a program that
// is not there, a working directory its user cannot enter), warnings
// where it depends on the moment (a listen address another process holds
// now). bad counts the specs with an error.
func runtimeProblems(specs []*appfile.Spec) (errs, warnings []error, bad int) {
	self, _ := os.Executable()
	for _, s := range specs {
		if s.Driver == "" || s.Driver == appfile.DriverExec {
			if e := execProblems(s); len(e) > 0 {
				errs = append(errs, e...)
				bad++
			}
		}
		for i, addr := range s.Listen {
			if msg := heldListen(addr, self); msg != "" {
				warnings = append(warnings, &appfile.FieldError{File: s.File, Field: fmt.Sprintf("listen[%d]", i), Msg: msg})
			}
		}
	}
	return errs, warnings, bad
}

// execProblems are the exec driver's own checks at a start, made now.
func execProblems(s *appfile.Spec) []error {
	var errs []error
	if len(s.Command) > 0 {
		if _, err := execdriver.FindProgram(s.Command[0], s.Dir, s.EnvironWithoutPort()); err != nil {
			errs = append(errs, &appfile.FieldError{File: s.File, Field: "command", Msg: err.Error()})
		}
	}
	if s.User != "" && os.Geteuid() == 0 {
		// A daemon that is not root refuses user: anyway (privilegeErrors).
		cred, err := execdriver.Credential(s.User, s.Group)
		if err != nil {
			errs = append(errs, &appfile.FieldError{File: s.File, Field: "user", Msg: err.Error()})
		} else if err := execdriver.CheckEnter(cred, s.User, s.Dir); err != nil {
			errs = append(errs, &appfile.FieldError{File: s.File, Field: "user", Msg: err.Error()})
		}
	}
	return errs
}

// heldListen says who holds addr when something other than a DynaPM
// (self, or a binary of its name: the daemon serving these very files)
// listens there now; "" when the address is free or DynaPM's.
func heldListen(addr, self string) string {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return ""
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return ""
	}
	if ap, ok := listenAddrPort(addr); ok {
		if pid, _, ok := execdriver.FindListener(ap); ok && isDynaPM(pid, self) {
			return ""
		}
	}
	return addrInUse(addr, true)
}

// isDynaPM reports whether process pid runs self or a program named dynapm.
func isDynaPM(pid int, self string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	return exe == self || filepath.Base(exe) == "dynapm"
}
