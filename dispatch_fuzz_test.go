package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzDispatch runs the command line dispatch with arbitrary arguments
// (NUL-separated): it must never panic, and always return an exit code of
// 0, 1 or 2. Client commands point at a state directory with no daemon.
// The daemon itself (run, or a first argument that is a flag) would serve
// forever: its command line goes through parseSettings, all of run's
// parsing, which must report every failure on stderr with exit code 1 or
// 2, and give the same settings for the same arguments.
func FuzzDispatch(f *testing.F) {
	dir := f.TempDir()
	good, bad := filepath.Join(dir, "dynapm.yaml"), filepath.Join(dir, "bad.toml")
	for path, content := range map[string]string{
		good: "apps_dir: ./apps.d\nmetrics: 127.0.0.1:9464\nlog: {format: json, level: debug}\n",
		bad:  "log = 3\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	for _, seed := range []string{
		"status", "status\x00-json", "start\x00web", "stop", "restart\x00a\x00b",
		"logs\x00web\x00-n\x00-5", "logs\x00-f", "check\x00-apps\x00/nonexistent", "help", "bogus\x00-x",
		"status\x00-config\x00/dev/null", "start\x00-state",
		"run", "run\x00-apps\x00/nonexistent\x00-state\x00/x", "-state\x00/x", "-config", "run\x00-h",
		"run\x00-config\x00" + good, "-config=" + good + "\x00-apps\x00x", "run\x00-config\x00" + bad,
		"run\x00extra", "check\x00apps.d", "run\x00--state=x\x00--\x00-apps",
	} {
		f.Add(seed)
	}
	state := f.TempDir()
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		switch {
		case args[0] == "run":
			checkParseSettings(t, args[1:])
			return
		case strings.HasPrefix(args[0], "-"):
			checkParseSettings(t, args)
			return
		case args[0] == "":
			return
		case args[0] != "check" && args[0] != "help":
			args = append([]string{args[0], "-state", state}, args[1:]...)
		}
		code := dispatch(args, io.Discard, io.Discard)
		if code < 0 || code > 2 {
			t.Fatalf("dispatch(%q) = %d, want 0, 1 or 2", args, code)
		}
	})
}

// checkParseSettings parses run's arguments twice and checks the contract.
func checkParseSettings(t *testing.T, args []string) {
	t.Helper()
	var stderr bytes.Buffer
	s, code, ok := parseSettings("run", args, &stderr)
	switch {
	case ok && code != 0:
		t.Fatalf("parseSettings(%q) ok with exit code %d", args, code)
	case !ok && code != 1 && code != 2:
		t.Fatalf("parseSettings(%q) failed with exit code %d, want 1 or 2", args, code)
	case !ok && stderr.Len() == 0:
		t.Fatalf("parseSettings(%q) failed (exit %d) without saying why", args, code)
	}
	s2, code2, ok2 := parseSettings("run", args, io.Discard)
	if ok2 != ok || code2 != code || (ok && !reflect.DeepEqual(s, s2)) {
		t.Fatalf("parseSettings(%q) is not deterministic: %v %d %+v, then %v %d %+v", args, ok, code, s, ok2, code2, s2)
	}
}
