package main

import (
	"io"
	"strings"
	"testing"
)

// FuzzDispatch runs the command line dispatch with arbitrary arguments
// (NUL-separated): it must never panic, and always return an exit code of
// 0, 1 or 2. The daemon itself (run, or no command) is left out: it would
// serve forever. Client commands point at a state directory with no daemon.
func FuzzDispatch(f *testing.F) {
	for _, seed := range []string{
		"status", "status\x00-json", "start\x00web", "stop", "restart\x00a\x00b",
		"logs\x00web\x00-n\x00-5", "logs\x00-f", "check\x00-apps\x00/nonexistent", "help", "bogus\x00-x",
		"status\x00-config\x00/dev/null", "start\x00-state",
	} {
		f.Add(seed)
	}
	state := f.TempDir()
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		if len(args) == 0 || args[0] == "run" || args[0] == "" || strings.HasPrefix(args[0], "-") {
			return
		}
		if args[0] != "check" && args[0] != "help" {
			args = append([]string{args[0], "-state", state}, args[1:]...)
		}
		code := dispatch(args, io.Discard, io.Discard)
		if code < 0 || code > 2 {
			t.Fatalf("dispatch(%q) = %d, want 0, 1 or 2", args, code)
		}
	})
}
