package main

import (
	"bytes"
	"strings"
	"testing"
)

// `dynapm check apps.d` used to check ./apps.d whatever the argument said.
func TestRunAndCheckRefuseAnArgumentThatIsNotAFlag(t *testing.T) {
	for _, args := range [][]string{{"check", "elsewhere.d"}, {"check", "-apps", "x", "y"}, {"run", "extra"}, {"-state", "s", "extra"}} {
		var stdout, stderr bytes.Buffer
		code := dispatch(args, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "unexpected argument") || !strings.Contains(stderr.String(), "-apps DIR") {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 naming the argument and -apps DIR", args, code, &stderr)
		}
	}
}
