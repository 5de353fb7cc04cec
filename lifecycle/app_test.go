package lifecycle

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

func TestBuildEnvAddsPortAndAppEnv(t *testing.T) {
	t.Setenv("DYNAPM_TEST_VAR", "daemon")
	spec := &appfile.Spec{Env: map[string]string{"B": "b:${PORT}", "A": "a", "DYNAPM_TEST_VAR": "app"}}
	env := buildEnv(spec, 9000, 2, "")
	if !slices.Contains(env, "PORT=9000") {
		t.Error("no PORT=9000")
	}
	if !slices.Contains(env, "INSTANCE=2") {
		t.Error("no INSTANCE=2")
	}
	tail := env[len(env)-3:]
	if want := []string{"A=a", "B=b:9000", "DYNAPM_TEST_VAR=app"}; !slices.Equal(tail, want) {
		t.Errorf("app env %q, want %q (sorted, expanded, after the daemon's)", tail, want)
	}
	// The program sees the last value of a name.
	var v string
	for _, kv := range env {
		if val, ok := strings.CutPrefix(kv, "DYNAPM_TEST_VAR="); ok {
			v = val
		}
	}
	if v != "app" {
		t.Errorf("app env does not override the daemon's: %q", v)
	}
}

func TestExpandSpecLeavesSharedSpecAlone(t *testing.T) {
	spec := &appfile.Spec{Name: "x", Command: []string{"srv", "--port", "${PORT}"}}
	got := expandSpec(spec, 7, "")
	if !slices.Equal(got.Command, []string{"srv", "--port", "7"}) || spec.Command[2] != "${PORT}" {
		t.Fatalf("expanded %q, original now %q", got.Command, spec.Command)
	}
}

func TestSocketIsExpandedInCommandAndAppEnvOnly(t *testing.T) {
	t.Setenv("DYNAPM_TEST_SOCK", "daemon's $SOCKET")
	spec := &appfile.Spec{Name: "x", Command: []string{"srv", "--bind", "unix:${SOCKET}", "$SOCKETS"},
		Env: map[string]string{"BIND": "unix:$SOCKET"}}
	got := expandSpec(spec, 0, "/s/x.sock")
	if !slices.Equal(got.Command, []string{"srv", "--bind", "unix:/s/x.sock", "$SOCKETS"}) || spec.Command[2] != "unix:${SOCKET}" {
		t.Fatalf("expanded %q, original now %q", got.Command, spec.Command)
	}
	env := buildEnv(spec, 0, 0, "/s/x.sock")
	for _, want := range []string{"SOCKET=/s/x.sock", "BIND=unix:/s/x.sock", "DYNAPM_TEST_SOCK=daemon's $SOCKET"} {
		if !slices.Contains(env, want) {
			t.Errorf("no %s in %q", want, env)
		}
	}
}

func TestReloadRestartsOnlyForWhatTheProgramSees(t *testing.T) {
	base := appfile.Spec{Name: "x", Command: []string{"a"}, Dir: "/d", Env: map[string]string{"K": "v"}, Upstream: "127.0.0.1:1", IdleTimeout: time.Minute}
	for name, edit := range map[string]func(*appfile.Spec){
		"command":        func(s *appfile.Spec) { s.Command = []string{"b"} },
		"dir":            func(s *appfile.Spec) { s.Dir = "/e" },
		"env":            func(s *appfile.Spec) { s.Env = map[string]string{"K": "w"} },
		"upstream":       func(s *appfile.Spec) { s.Upstream = "127.0.0.1:2" },
		"proxy_protocol": func(s *appfile.Spec) { s.ProxyProtocol = "v1" },
	} {
		s := base
		edit(&s)
		if !s.NeedsRestart(&base) {
			t.Errorf("a changed %s needs no restart", name)
		}
	}
	for name, edit := range map[string]func(*appfile.Spec){
		"idle_timeout": func(s *appfile.Spec) { s.IdleTimeout = time.Hour },
		"mode":         func(s *appfile.Spec) { s.Mode = appfile.Persistent },
		"max_pending":  func(s *appfile.Spec) { s.MaxPending = 3 },
		"stop_timeout": func(s *appfile.Spec) { s.StopTimeout = time.Hour },
	} {
		s := base
		edit(&s)
		if s.NeedsRestart(&base) {
			t.Errorf("a changed %s restarts", name)
		}
	}
}

func TestLogTailShowsLastLinesOfLastStart(t *testing.T) {
	m := &Manager{cfg: Config{StateDir: t.TempDir()}}
	if got := m.logTail("none"); got != "" {
		t.Fatalf("tail of a missing log = %q", got)
	}
	f, _, err := m.openLog("x", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "old run")
	f.Close()
	f, _, err = m.openLog("x", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		fmt.Fprintf(f, "line %d\n", i)
	}
	f.Close()
	got := m.logTail("x")
	lines := strings.Split(got, "\n")
	if len(lines) != tailLines || lines[0] != "line 80" || lines[len(lines)-1] != "line 99" {
		t.Fatalf("tail = %q", got)
	}

	// Long lines: bounded in bytes, no partial first line.
	if err := os.WriteFile(filepath.Join(m.cfg.StateDir, "logs", "y.log"), []byte(strings.Repeat(strings.Repeat("z", 1000)+"\n", 10)), 0o600); err != nil {
		t.Fatal(err)
	}
	got = m.logTail("y")
	if len(got) > tailBytes || !strings.HasPrefix(got, strings.Repeat("z", 1000)) {
		t.Fatalf("tail of long lines: %d bytes, starts %q", len(got), got[:min(len(got), 20)])
	}
	// Only the last start's output.
	f, _, err = m.openLog("x", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := m.logTail("x"); got != "" {
		t.Fatalf("tail after a fresh header = %q", got)
	}
}
