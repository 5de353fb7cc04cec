package appfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// names returns the app names of specs in order.
func names(specs []*Spec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}

// errorFor returns the text of the one error about file, failing if there is
// not exactly one.
func errorFor(t *testing.T, errs []error, file string) string {
	t.Helper()
	var found []string
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) && fe.File == file {
			found = append(found, e.Error())
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one error for %s, got %q (all: %v)", file, found, errs)
	}
	return found[0]
}

func TestLoadDirSkipsLeftoversAndSorts(t *testing.T) {
	dir := t.TempDir()
	app := "listen: ':%s'\ncommand: x\n"
	writeFile(t, dir, "zeta.yaml", strings.Replace(app, "%s", "1001", 1))
	writeFile(t, dir, "alpha.toml", "listen = ':1002'\ncommand = 'x'\n")
	writeFile(t, dir, "mid.json", `{"listen": ":1003", "command": "x"}`)
	for _, junk := range []string{".hidden.yaml", ".#zeta.yaml", "zeta.yaml~", ".zeta.yaml.swp", "4913", "notes.txt", "zeta.yaml.tmp"} {
		writeFile(t, dir, junk, "garbage: [")
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil { // a directory is not a file
		t.Fatal(err)
	}
	specs, errs := LoadDir(dir)
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	if got := strings.Join(names(specs), ","); got != "alpha,mid,zeta" {
		t.Errorf("apps = %s, want alpha,mid,zeta", got)
	}
}

func TestLoadDirBadFileLeavesOthers(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "good.yaml", "listen: ':1001'\ncommand: x\n")
	bad := writeFile(t, dir, "bad.yaml", "listen: ':1002'\ncommand: x\nidel_timeout: 1m\n")
	upper := writeFile(t, dir, "Upper.yaml", "listen: ':1003'\ncommand: x\n")
	specs, errs := LoadDir(dir)
	if got := strings.Join(names(specs), ","); got != "good" {
		t.Errorf("apps = %s, want good", got)
	}
	if msg := errorFor(t, errs, bad); !strings.Contains(msg, "idel_timeout: unknown key") {
		t.Errorf("bad.yaml error = %q", msg)
	}
	// A misnamed file is reported, not silently skipped.
	if msg := errorFor(t, errs, upper); !strings.Contains(msg, `app name "Upper"`) {
		t.Errorf("Upper.yaml error = %q", msg)
	}
}

func TestLoadDirSameStemTwice(t *testing.T) {
	dir := t.TempDir()
	y := writeFile(t, dir, "web.yaml", "listen: ':1001'\ncommand: x\n")
	j := writeFile(t, dir, "web.toml", "listen = ':1002'\ncommand = 'x'\n")
	writeFile(t, dir, "other.yaml", "listen: ':1003'\ncommand: x\n")
	specs, errs := LoadDir(dir)
	if got := strings.Join(names(specs), ","); got != "other" {
		t.Errorf("apps = %s, want other (neither web file may win by sort order)", got)
	}
	if msg := errorFor(t, errs, y); !strings.Contains(msg, j) {
		t.Errorf("web.yaml error %q does not name web.toml", msg)
	}
	if msg := errorFor(t, errs, j); !strings.Contains(msg, y) {
		t.Errorf("web.toml error %q does not name web.yaml", msg)
	}
}

func TestLoadDirListenConflicts(t *testing.T) {
	cases := []struct {
		name     string
		a, b     string // the two files' bodies; b is the later one
		conflict string // substring of b's error; "" for no conflict
	}{
		{"same address, no match", "listen: '127.0.0.1:1001'", "listen: '127.0.0.1:1001'", "neither app has match"},
		{"localhost is 127.0.0.1", "listen: 'localhost:1001'", "listen: '127.0.0.1:1001'", "neither app has match"},
		{"wildcard overlaps host", "listen: ':1001'", "listen: '127.0.0.1:1001'", "overlaps"},
		{"0.0.0.0 overlaps ::", "listen: '0.0.0.0:1001'", "listen: '[::1]:1001'", "overlaps"},
		{"different ports", "listen: ':1001'", "listen: ':1002'", ""},
		{"different hosts", "listen: '127.0.0.1:1001'", "listen: '127.0.0.2:1001'", ""},
		{"one fallback, one sni", "listen: ':1001'", "listen: ':1001'\nmatch: {sni: [b.example.com]}", ""},
		{"distinct sni", "listen: ':1001'\nmatch: {sni: [a.example.com]}", "listen: ':1001'\nmatch: {sni: [b.example.com]}", ""},
		{"sni and host", "listen: ':1001'\nmatch: {sni: [a.example.com]}", "listen: ':1001'\nmatch: {host: [a.example.com]}", ""},
		{"same sni", "listen: ':1001'\nmatch: {sni: [a.example.com, c.example.com]}", "listen: ':1001'\nmatch: {sni: [c.example.com]}", `also matches sni "c.example.com"`},
		{"same host", "listen: ':1001'\nmatch: {host: [a.example.com]}", "listen: ':1001'\nmatch: {host: [a.example.com]}", `also matches host "a.example.com"`},
		{"wildcard and exact name", "listen: ':1001'\nmatch: {sni: ['*.example.com']}", "listen: ':1001'\nmatch: {sni: [a.example.com, '*.a.example.com']}", ""},
		{"same wildcard", "listen: ':1001'\nmatch: {host: ['*.example.com']}", "listen: ':1001'\nmatch: {host: ['*.example.com']}", `also matches host "*.example.com"`},
		{"match does not cure overlap", "listen: ':1001'\nmatch: {sni: [a.example.com]}", "listen: '127.0.0.1:1001'\nmatch: {sni: [b.example.com]}", "overlaps"},
		{"same upstream", "listen: ':1001'\nupstream: '127.0.0.1:2001'", "listen: ':1002'\nupstream: 'localhost:2001'", "also the upstream of"},
		{"upstream is another listen", "listen: ':1001'", "listen: ':1002'\nupstream: '127.0.0.1:1001'", "would proxy this app into that one"},
		{"listen is another upstream", "listen: ':1001'\nupstream: '127.0.0.1:2001'", "listen: '127.0.0.1:2001'", "would proxy that app into this one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			a := writeFile(t, dir, "a.yaml", c.a+"\ncommand: x\n")
			b := writeFile(t, dir, "b.yaml", c.b+"\ncommand: x\n")
			specs, errs := LoadDir(dir)
			if c.conflict == "" {
				if len(errs) != 0 || len(specs) != 2 {
					t.Fatalf("want both apps and no errors, got %v and %v", names(specs), errs)
				}
				return
			}
			if got := strings.Join(names(specs), ","); got != "a" {
				t.Errorf("apps = %s, want a (the earlier app wins)", got)
			}
			msg := errorFor(t, errs, b)
			absA, _ := filepath.Abs(a)
			if !strings.Contains(msg, c.conflict) || !strings.Contains(msg, absA) {
				t.Errorf("error %q should contain %q and name %s", msg, c.conflict, absA)
			}
		})
	}
}

func TestCheckConflictsFirstWins(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) *Spec {
		s, err := Parse(filepath.Join(dir, name+".yaml"), []byte("listen: ':1001'\ncommand: x\n"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old, edited := mk("old"), mk("new")
	// A reload lists the app in force first: the new file is the one refused.
	errs := CheckConflicts([]*Spec{old, edited})
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), edited.File+": listen[0]: ") {
		t.Fatalf("errors = %v", errs)
	}
	// The same name twice (web.yaml replaced by web.toml during a reload).
	again := *old
	again.File = filepath.Join(dir, "old.toml")
	again.Listen = []string{":1002"}
	errs = CheckConflicts([]*Spec{old, &again})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `app name "old" is also used by `+old.File) {
		t.Fatalf("errors = %v", errs)
	}
	// A rejected app claims nothing: a third app on the same address is
	// compared with the first only.
	third := mk("third")
	errs = CheckConflicts([]*Spec{old, edited, third})
	for _, e := range errs {
		if strings.Contains(e.Error(), edited.File+" ") || strings.HasSuffix(e.Error(), edited.File) {
			t.Errorf("error names the rejected app: %v", e)
		}
	}
	if len(errs) != 2 {
		t.Errorf("want 2 errors, got %v", errs)
	}
}

// TestLoadDirConfigMapLayout mirrors a Kubernetes ConfigMap volume: the real
// files live in a timestamped dot-dot directory, ..data points at it, and
// the visible names are symlinks through ..data.
func TestLoadDirConfigMapLayout(t *testing.T) {
	dir := t.TempDir()
	ts := "..2024_05_01_10_00_00.000000001"
	writeFile(t, dir, ts+"/web.yaml", "listen: ':1001'\ncommand: x\ndir: .\n")
	writeFile(t, dir, ts+"/db.json", `{"listen": ":1002", "command": "x"}`)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(ts, filepath.Join(dir, "..data")))
	must(os.Symlink("..data/web.yaml", filepath.Join(dir, "web.yaml")))
	must(os.Symlink("..data/db.json", filepath.Join(dir, "db.json")))
	must(os.Symlink("..data/gone.yaml", filepath.Join(dir, "gone.yaml"))) // dangling
	specs, errs := LoadDir(dir)
	if got := strings.Join(names(specs), ","); got != "db,web" {
		t.Errorf("apps = %s, want db,web", got)
	}
	gone := filepath.Join(dir, "gone.yaml")
	if msg := errorFor(t, errs, gone); !strings.Contains(msg, "reading app file") {
		t.Errorf("dangling symlink error = %q", msg)
	}
	if len(errs) != 1 {
		t.Errorf("errors = %v", errs)
	}
	for _, s := range specs {
		// File and the default dir are the visible paths, not the
		// timestamped target, which the next ConfigMap update deletes.
		if filepath.Dir(s.File) != dir || s.Dir != dir {
			t.Errorf("%s: File %s Dir %s, want under %s", s.Name, s.File, s.Dir, dir)
		}
	}
}

func TestLoadDirMissing(t *testing.T) {
	specs, errs := LoadDir(filepath.Join(t.TempDir(), "nope"))
	if specs != nil || len(errs) != 1 || !errors.Is(errs[0], os.ErrNotExist) {
		t.Fatalf("specs %v errs %v", specs, errs)
	}
}
