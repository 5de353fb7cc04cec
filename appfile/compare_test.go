package appfile

import (
	"path/filepath"
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
