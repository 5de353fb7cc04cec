package appfile

import (
	"path/filepath"
	"testing"
)

func TestParseScale(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "web.yaml")
	base := "listen: ':1001'\ncommand: [./srv]\n"
	cases := []struct {
		extra string
		want  Scale
	}{
		{"", Scale{}},
		{"scale: {max: 4}\n", Scale{Max: 4, TargetConnections: DefaultTargetConnections}},
		{"scale: {max: 3, min: 1, target_connections: 7}\n", Scale{Max: 3, Min: 1, TargetConnections: 7}},
		{"scale: {max: 2, min: 2}\n", Scale{Max: 2, Min: 2, TargetConnections: DefaultTargetConnections}},
		// max 1 with a fixed upstream is a single instance, as today.
		{"scale: {max: 1}\nupstream: 127.0.0.1:2001\n", Scale{Max: 1, TargetConnections: DefaultTargetConnections}},
	}
	for _, c := range cases {
		s, err := Parse(p, []byte(base+c.extra))
		if err != nil {
			t.Fatalf("%q: %v", c.extra, err)
		}
		if s.Scale != c.want {
			t.Errorf("%q: Scale = %+v, want %+v", c.extra, s.Scale, c.want)
		}
		if s.Scale.Instances() != max(c.want.Max, 1) {
			t.Errorf("%q: Instances() = %d", c.extra, s.Scale.Instances())
		}
	}
}

func TestParseScaleErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "web.yaml")
	base := "listen: ':1001'\ncommand: [./srv]\n"
	cases := []struct {
		extra, field, want string
	}{
		{"scale: {max: 2}\nupstream: 127.0.0.1:2001\n", "upstream", "leave upstream out"},
		{"scale: {min: 1}\n", "scale.max", "required key is missing"},
		{"scale: {max: 0}\n", "scale.max", ""},
		{"scale: {max: 2, min: 3}\n", "scale.min", "at most max (2)"},
		{"scale: {max: 2, min: -1}\n", "scale.min", ""},
		{"scale: {max: 2, target_connections: 0}\n", "scale.target_connections", ""},
		{"scale: {max: 2, maxi: 3}\n", "scale.maxi", "unknown key"},
		{"scale: 3\n", "scale", "expected a mapping"},
		{"scale: {max: 2}\ndriver: command\nstart: [a]\nstop: [b]\nupstream: 127.0.0.1:2001\n", "scale", "scale needs driver exec"},
	}
	for _, c := range cases {
		t.Run(c.extra, func(t *testing.T) {
			s, err := Parse(p, []byte(base+c.extra))
			if s != nil {
				t.Errorf("got a spec along with errors: %+v", s)
			}
			requireFieldError(t, err, p, c.field, c.want)
		})
	}
}

// A scale change needs no restart (min and max apply live) but is a change.
func TestScaleChangeNeedsNoRestart(t *testing.T) {
	p := filepath.Join(t.TempDir(), "web.yaml")
	parse := func(extra string) *Spec {
		t.Helper()
		s, err := Parse(p, []byte("listen: ':1001'\ncommand: [./srv]\n"+extra))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old, next := parse("scale: {max: 2}\n"), parse("scale: {max: 3, min: 1}\n")
	if next.Equal(old) {
		t.Error("specs with different scale are Equal")
	}
	if next.NeedsRestart(old) {
		t.Error("a scale change needs a restart")
	}
	if !parse("scale: {max: 2}\n").Equal(old) {
		t.Error("the same scale parsed twice is not Equal")
	}
}
