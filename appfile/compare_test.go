package appfile

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestEqualAndNeedsRestart(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "sub/x", "")
	base := "listen: ':1001'\ncommand: [./srv]\nenv: {A: b}\n"
	parse := func(extra string) *Spec {
		t.Helper()
		s, err := Parse(filepath.Join(dir, "web.yaml"), []byte(base+extra))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old := parse("")
	if !parse("").Equal(old) {
		t.Fatal("a spec parsed twice from the same bytes is not Equal")
	}
	if old.NeedsRestart(old) {
		t.Fatal("a spec needs a restart against itself")
	}
	if !old.NeedsRestart(nil) {
		t.Error("NeedsRestart(nil) = false, want true")
	}
	cases := []struct {
		extra   string
		restart bool
	}{
		{"upstream: 127.0.0.1:2001\n", true},
		{"dir: sub\n", true},
		{"proxy_protocol: v2\n", true},
		{"idle_timeout: 1s\n", false},
		{"start_timeout: 1s\n", false},
		{"stop_timeout: 1s\n", false},
		{"stop_signal: SIGINT\n", false},
		{"mode: always\n", false},
		{"ready: {http: /h}\n", false},
		{"max_pending: 3\n", false},
		{"memory_priority: 3\n", false},
		{"memory_max: 1GiB\n", false},
		{"match: {sni: [a.com]}\n", false},
		{"wake: [{cron: '@daily'}]\n", false},
		{"jobs: [{cron: '@daily', command: x}]\n", false},
	}
	for _, c := range cases {
		s := parse(c.extra)
		if s.Equal(old) {
			t.Errorf("%q: Equal = true", c.extra)
		}
		if got := s.NeedsRestart(old); got != c.restart {
			t.Errorf("%q: NeedsRestart = %v, want %v", c.extra, got, c.restart)
		}
	}
	// Changes in the keys of the base itself.
	for _, b := range []string{
		"listen: ':1001'\ncommand: [./srv, -v]\nenv: {A: b}\n",
		"listen: ':1001'\ncommand: [./srv]\nenv: {A: c}\n",
		"listen: ':1001'\ncommand: [./srv]\n",
	} {
		s, err := Parse(filepath.Join(dir, "web.yaml"), []byte(b))
		if err != nil {
			t.Fatal(err)
		}
		if !s.NeedsRestart(old) || s.Equal(old) {
			t.Errorf("%q: NeedsRestart %v Equal %v", b, s.NeedsRestart(old), s.Equal(old))
		}
	}
	moved := parse("")
	moved.Listen = []string{":1002"}
	if moved.Equal(old) || moved.NeedsRestart(old) {
		t.Error("a listen change must be unequal but need no restart")
	}
	var nilSpec *Spec
	if !nilSpec.Equal(nil) || nilSpec.Equal(old) || old.Equal(nil) {
		t.Error("Equal with nil")
	}
}

// Changed names the keys a change touched, and only those; every key an
// app file may have is compared.
func TestChangedNamesTheKeysThatChanged(t *testing.T) {
	dir := t.TempDir()
	parse := func(text string) *Spec {
		t.Helper()
		s, err := Parse(filepath.Join(dir, "web.yaml"), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old := parse("listen: ':1001'\ncommand: [./srv]\nenv: {TOKEN: one}\n")
	s := parse("listen: ':1002'\ncommand: [./srv]\nenv: {TOKEN: two}\nidle_timeout: 1m\n")
	if got := s.Changed(old); !slices.Equal(got, []string{"listen", "env", "idle_timeout"}) {
		t.Errorf("Changed = %q, want [listen env idle_timeout]", got)
	}
	if got := old.Changed(old); len(got) != 0 {
		t.Errorf("Changed against itself = %q", got)
	}
	var compared []string
	for _, k := range specKeys {
		compared = append(compared, k.key)
	}
	for _, k := range topKeys {
		if !slices.Contains(compared, k) {
			t.Errorf("app file key %s is not compared by Equal, NeedsRestart and Changed", k)
		}
	}
}
