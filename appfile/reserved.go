package appfile

import (
	"errors"
	"fmt"
)

// Reserved is an address the daemon listens on itself, which no app may
// claim: What names it for the error ("the daemon's metrics address
// (setting `metrics` in /etc/dynapm.yaml)").
type Reserved struct {
	Addr string
	What string
}

// CheckReserved returns an error naming each listen address and fixed
// upstream of s that overlaps one of reserved, or nil. A reserved address
// that is not an IP address (a host name) is not judged: binding it tells.
func CheckReserved(s *Spec, reserved []Reserved) error {
	var errs []error
	for _, r := range reserved {
		own, err := parseHostPort(r.Addr)
		if err != nil {
			continue
		}
		for i, text := range s.Listen {
			if a, err := parseHostPort(text); err == nil && a.overlaps(own) {
				errs = append(errs, &FieldError{File: s.File, Field: index("listen", i),
					Msg: fmt.Sprintf("%s is also %s: choose another port for the app or for the daemon", Quote(text), r.What)})
			}
		}
		if s.Upstream != "" {
			if a, err := parseHostPort(s.Upstream); err == nil && a.overlaps(own) {
				errs = append(errs, &FieldError{File: s.File, Field: "upstream",
					Msg: fmt.Sprintf("%s is also %s: the app's program could not listen there", Quote(s.Upstream), r.What)})
			}
		}
	}
	return errors.Join(errs...)
}
