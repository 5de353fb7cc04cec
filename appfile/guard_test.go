package appfile

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseGuardKeys(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "web.yaml", minimal+
		"unavailable_reply: \"HTTP/1.1 503 Service Unavailable\\r\\nRetry-After: 5\\r\\n\\r\\n\"\n"+
		"user: nobody\ngroup: \"65534\"\nlimits: {nofile: 1024, nproc: 64}\numask: \"027\"\n")
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n"; s.UnavailableReply != want {
		t.Errorf("UnavailableReply = %q, want %q", s.UnavailableReply, want)
	}
	if s.User != "nobody" || s.Group != "65534" {
		t.Errorf("User, Group = %q, %q", s.User, s.Group)
	}
	if s.Limits != (Limits{NoFile: 1024, NProc: 64}) {
		t.Errorf("Limits = %+v", s.Limits)
	}
	if s.Umask != "027" {
		t.Errorf("Umask = %q, want 027", s.Umask)
	}
}

func TestParseGuardKeysDefaultOff(t *testing.T) {
	s, err := Parse(filepath.Join(t.TempDir(), "web.yaml"), []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if s.UnavailableReply != "" || s.User != "" || s.Group != "" || s.Limits != (Limits{}) || s.Umask != "" {
		t.Fatalf("guard keys not off by default: %+v", s)
	}
}

func TestParseGuardKeysErrors(t *testing.T) {
	cases := []struct{ extra, field, want string }{
		{"umask: 27\n", "umask", "octal string"},
		{"umask: \"0999\"\n", "umask", "octal mask"},
		{"umask: \"1777\"\n", "umask", "octal mask"},
		{"user: \"a:b\"\n", "user", "user name"},
		{"group: \"\"\n", "group", "group name"},
		{"limits: {nofile: 0}\n", "limits.nofile", "integer from 1"},
		{"limits: {files: 3}\n", "limits.files", ""},
		{"unavailable_reply: 503\n", "unavailable_reply", "expected a string"},
		{"unavailable_reply: \"" + strings.Repeat("x", maxUnavailableReply+1) + "\"\n", "unavailable_reply", "at most"},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "web.yaml")
		_, err := Parse(path, []byte(minimal+c.extra))
		requireFieldError(t, err, path, c.field, c.want)
	}
}

func TestGuardKeysChangeNeedsRestartExceptReply(t *testing.T) {
	dir := t.TempDir()
	parse := func(extra string) *Spec {
		t.Helper()
		s, err := Parse(filepath.Join(dir, "web.yaml"), []byte(minimal+extra))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := parse("")
	for _, extra := range []string{"user: nobody\n", "group: nogroup\n", "limits: {nproc: 9}\n", "umask: \"077\"\n"} {
		if s := parse(extra); !s.NeedsRestart(base) || s.Equal(base) {
			t.Errorf("%q: NeedsRestart = %v, Equal = %v; want true, false", extra, s.NeedsRestart(base), s.Equal(base))
		}
	}
	if s := parse("unavailable_reply: busy\n"); s.NeedsRestart(base) || s.Equal(base) {
		t.Errorf("unavailable_reply: NeedsRestart = %v, Equal = %v; want false, false", s.NeedsRestart(base), s.Equal(base))
	}
}
