package appfile

import "fmt"

// MaxExecBytes bounds what one exec of an app's program takes from its
// file: the argv words and the env entries (NAME=value), each counted with
// its terminating NUL. Linux refuses a single string of 128 KiB or more
// (MAX_ARG_STRLEN) and all of them together past ARG_MAX (a quarter of the
// stack limit, 2 MiB by default), which the daemon's own environment
// shares. Refusing more here makes check refuse what every start would
// fail on, and bounds what each start copies. ${PORT} never lengthens a
// string: a port has at most 5 digits.
const MaxExecBytes = 128 << 10

// execSize refuses a command that, with env, exec would refuse.
func (d *decoder) execSize(s *Spec) {
	env := 0
	for k, v := range s.Env {
		env += len(k) + 1 + len(v) + 1
	}
	if env > MaxExecBytes {
		d.errorf("env", "expected at most %d bytes of NAME=value entries, got %d (exec refuses a string of 128 KiB, and the daemon's own environment needs room)",
			MaxExecBytes, env)
		return
	}
	check := func(field string, argv []string) {
		n := env
		for _, w := range argv {
			n += len(w) + 1
		}
		if n > MaxExecBytes {
			d.errorf(field, "expected at most %d bytes of command and env together, got %d (exec refuses a string of 128 KiB, and the daemon's own environment needs room)",
				MaxExecBytes, n)
		}
	}
	check("command", s.Command)
	check("start", s.StartCommand)
	check("stop", s.StopCommand)
	check("check", s.CheckCommand)
	for i, j := range s.Jobs {
		check(fmt.Sprintf("jobs[%d].command", i), j.Command)
	}
}
