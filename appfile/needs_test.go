package appfile

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNeedsParse(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "web.yaml", "listen: ':1001'\ncommand: x\nneeds: [db, cache]\n")
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Needs, []string{"db", "cache"}) {
		t.Fatalf("Needs = %q", s.Needs)
	}
	p = writeFile(t, dir, "one.yaml", "listen: ':1002'\ncommand: x\nneeds: db\n")
	if s, err := Load(p); err != nil || !slices.Equal(s.Needs, []string{"db"}) {
		t.Fatalf("a single name: %v, %v", s, err)
	}
}

func TestNeedsParseErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ body, field, want string }{
		{"needs: [Web]", "needs[0]", `expected an app name (the stem of its file, matching [a-z0-9][a-z0-9_-]*), got "Web"`},
		{"needs: [app]", "needs[0]", `"app" is this app: an app cannot need itself`},
		{"needs: [db, db]", "needs[1]", `"db" is listed twice`},
		{"needs: 3", "needs", "expected an app name or a list of them, got"},
	} {
		p := writeFile(t, dir, "app.yaml", "listen: ':1001'\ncommand: x\n"+c.body+"\n")
		_, err := Load(p)
		requireFieldError(t, err, p, c.field, c.want)
	}
}

func TestLoadDirNeedsUnknownApp(t *testing.T) {
	dir := t.TempDir()
	web := writeFile(t, dir, "web.yaml", "listen: ':1001'\ncommand: x\nneeds: [db]\n")
	// front needs web, which is refused: front is refused in turn.
	front := writeFile(t, dir, "front.yaml", "listen: ':1002'\ncommand: x\nneeds: web\n")
	writeFile(t, dir, "other.yaml", "listen: ':1003'\ncommand: x\n")
	specs, errs := LoadDir(dir)
	if got := names(specs); !slices.Equal(got, []string{"other"}) {
		t.Fatalf("served %q, want only other (errors: %v)", got, errs)
	}
	if msg := errorFor(t, errs, web); !strings.Contains(msg, `needs[0]: "db" is not an app that is served`) {
		t.Errorf("web: %s", msg)
	}
	if msg := errorFor(t, errs, front); !strings.Contains(msg, `needs[0]: "web" is not an app that is served`) {
		t.Errorf("front: %s", msg)
	}
}

func TestLoadDirNeedsCycleNamed(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", "listen: ':1001'\ncommand: x\nneeds: [b]\n")
	writeFile(t, dir, "b.yaml", "listen: ':1002'\ncommand: x\nneeds: [c]\n")
	c := writeFile(t, dir, "c.yaml", "listen: ':1003'\ncommand: x\nneeds: [a]\n")
	specs, errs := LoadDir(dir)
	// c closes the cycle and is refused; then b needs a refused app, and a
	// needs b: nothing of the cycle is served.
	if len(specs) != 0 {
		t.Fatalf("served %q, want none", names(specs))
	}
	msg := errorFor(t, errs, c)
	if !strings.Contains(msg, `needs[0]: "a" closes a cycle: c -> a -> b -> c`) {
		t.Errorf("c: %s", msg)
	}
	if msg := errorFor(t, errs, filepath.Join(dir, "b.yaml")); !strings.Contains(msg, `"c" is not an app that is served`) {
		t.Errorf("b: %s", msg)
	}
}

func TestLoadDirNeedsInOwnExclusiveGroup(t *testing.T) {
	dir := t.TempDir()
	web := writeFile(t, dir, "web.yaml", "listen: ':1001'\ncommand: x\nneeds: [db]\nexclusive: big\n")
	writeFile(t, dir, "db.yaml", "listen: ':1002'\ncommand: x\nexclusive: big\n")
	specs, errs := LoadDir(dir)
	if got := names(specs); !slices.Equal(got, []string{"db"}) {
		t.Fatalf("served %q (errors %v)", got, errs)
	}
	if msg := errorFor(t, errs, web); !strings.Contains(msg, `needs[0]: "db" is in exclusive group "big" too`) {
		t.Errorf("web: %s", msg)
	}
}

func TestCheckConflictsNeedsEarlierWins(t *testing.T) {
	dir := t.TempDir()
	parse := func(name, body string) *Spec {
		s, err := Load(writeFile(t, dir, name, "command: x\n"+body))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	web := parse("web.yaml", "listen: ':1001'\nneeds: [db]\n")
	db := parse("db.yaml", "listen: ':1002'\n")
	// An edit of db that needs web comes later (hot reload lists the apps
	// in force first): the edit is refused, the apps in force stay.
	dbEdit := parse("db.yaml", "listen: ':1002'\nneeds: [web]\n")
	if errs := CheckConflicts([]*Spec{web, db}); len(errs) != 0 {
		t.Fatalf("a chain is no conflict: %v", errs)
	}
	errs := CheckConflicts([]*Spec{web, dbEdit})
	if msg := errorFor(t, errs, dbEdit.File); !strings.Contains(msg, `needs[0]: "web" closes a cycle: db -> web -> db`) {
		t.Fatalf("db: %s, want the cycle named", msg)
	}
	// Hot reload keeps db's version in force: web's needs are met there.
	if errs := MissingNeeds([]*Spec{web, db}); len(errs) != 0 {
		t.Fatalf("MissingNeeds: %v", errs)
	}
	errs = MissingNeeds([]*Spec{web})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), web.File+`: needs[0]: "db" is not an app that is served`) {
		t.Fatalf("MissingNeeds without db: %v", errs)
	}
}

func TestExclusiveAndHooksParse(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "llm.yaml", "listen: ':1001'\ncommand: x\nexclusive: gpu\nhook_timeout: 5m\n"+
		"hooks: {before_start: 'echo hi', after_stop: [./backup, -q]}\n")
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Exclusive != "gpu" || s.HookTimeout != 5*time.Minute ||
		!slices.Equal(s.Hooks.BeforeStart, []string{"/bin/sh", "-c", "echo hi"}) ||
		!slices.Equal(s.Hooks.AfterStop, []string{"./backup", "-q"}) || s.Hooks.AfterStart != nil {
		t.Fatalf("parsed %q %v %+v", s.Exclusive, s.HookTimeout, s.Hooks)
	}
	if d, _ := Load(writeFile(t, dir, "plain.yaml", "listen: ':1002'\ncommand: x\n")); d.HookTimeout != DefaultHookTimeout {
		t.Fatalf("default hook_timeout %v", d.HookTimeout)
	}
	for _, c := range []struct{ body, field, want string }{
		{"exclusive: GPU", "exclusive", `expected a group name matching [a-z0-9][a-z0-9_-]*, got "GPU"`},
		{"exclusive: gpu\nmode: always", "exclusive", "mode always is never stopped"},
		{"hooks: {after_stopp: x}", "hooks.after_stopp", "unknown key (did you mean after_stop?"},
		{"hooks: {before_start: ''}", "hooks.before_start", "expected a command, got an empty string"},
		{"hook_timeout: 0s", "hook_timeout", "expected a duration greater than 0"},
	} {
		p := writeFile(t, dir, "app.yaml", "listen: ':1003'\ncommand: x\n"+c.body+"\n")
		_, err := Load(p)
		requireFieldError(t, err, p, c.field, c.want)
	}
}
