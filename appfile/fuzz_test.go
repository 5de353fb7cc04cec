package appfile

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to Parse in each format. Parse must not
// panic, must be deterministic, and anything it accepts must be usable.
func FuzzParse(f *testing.F) {
	seeds := []struct {
		format uint8
		data   string
	}{
		{0, minimal},
		{0, "listen: [':1', '[::1]:2']\nupstream: localhost:3\ncommand: echo\nenv: {A: 1}\nmode: always\nready: {http: /h}\nmatch: {sni: ['*.a.com']}\nwake: [{cron: '@daily', keep: 1h}]\njobs: [{cron: '* * * * *', command: [x], needs_app: true}]\n"},
		{0, "listen: [a\n"},
		{0, "- 1\n"},
		{0, "wake: [{cron: 'CRON_TZ=UTC'}]\nlisten: ':1'\ncommand: x\n"},
		{0, "a: &a [*a]\n"},
		{0, "listen: &l ':1'\ncommand: [x, *l]\nenv: {<<: {A: 1}, B: 2}\n"},
		{0, "a: [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]\n"},
		{0, "l0: &l0 [a, a]\nl1: &l1 [*l0, *l0]\nl2: [*l1, *l1]\n"},
		{1, `{"listen": ":1", "command": ["x", 1], "max_pending": 1e300}`},
		{1, `{"listen": [1,`},
		{1, `[]`},
		{2, "listen = ':1'\ncommand = 'x'\n[ready]\nhttp = '/'\n[[wake]]\ncron = '@hourly'\n"},
		{2, "listen = \n"},
		{2, "listen = 1979-05-27T07:32:00Z\ncommand = 'x'\n"},
		{2, "[a.b.c.d]\ne = {f = [[1]]}\n"},
	}
	for _, s := range seeds {
		f.Add(s.format, []byte(s.data))
	}
	dir := f.TempDir()
	exts := []string{".yaml", ".json", ".toml"}
	f.Fuzz(func(t *testing.T, format uint8, data []byte) {
		path := filepath.Join(dir, "app"+exts[int(format)%len(exts)])
		s, err := Parse(path, data)
		s2, err2 := Parse(path, data)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("Parse is not deterministic: %v vs %v", err, err2)
		}
		if err != nil {
			if s != nil {
				t.Fatal("spec returned with an error")
			}
			fieldErrors(t, err) // every problem is a *FieldError
			quotesLittle(t, data, err)
			return
		}
		if !s.Equal(s2) {
			t.Fatalf("Parse is not deterministic: %+v vs %+v", s, s2)
		}
		if len(s.Listen) == 0 || len(s.Command) == 0 || s.Command[0] == "" {
			t.Fatalf("accepted spec without listen or command: %+v", s)
		}
		if s.Mode != OnDemand && s.Mode != Persistent && s.Mode != Always {
			t.Fatalf("accepted mode %q", s.Mode)
		}
		if s.IdleTimeout <= 0 || s.StartTimeout <= 0 || s.StopTimeout <= 0 || s.MaxPending < 1 {
			t.Fatalf("accepted non-positive limits: %+v", s)
		}
		for _, l := range s.Listen {
			if _, err := parseHostPort(l); err != nil {
				t.Fatalf("accepted listen %q: %v", l, err)
			}
		}
		for _, w := range s.Wake {
			if err := checkCron(w.Cron, loadZone); err != nil || w.Keep < 0 {
				t.Fatalf("accepted wake %+v", w)
			}
		}
		servable(t, s, data)
	})
}

// loadZone is decoder.zoneKnown without its cache and its bound.
func loadZone(zone string) (bool, error) {
	_, err := time.LoadLocation(zone)
	return err == nil, nil
}

// quotesLittle fails when an error line holds a long run of the file's
// bytes: errors quote at most MaxQuoted bytes of a value, and a library's
// message at most maxLibraryMessage.
func quotesLittle(t *testing.T, data []byte, err error) {
	t.Helper()
	const run = maxLibraryMessage + 1
	const half = run / 2 // any run holds a whole aligned block this long
	for line := range strings.SplitSeq(err.Error(), "\n") {
		_, msg, _ := strings.Cut(line, ": ") // after the file's path
		suspect := false
		for i := 0; i+half <= len(msg) && !suspect; i += half {
			suspect = bytes.Contains(data, []byte(msg[i:i+half]))
		}
		for i := 0; suspect && i+run <= len(msg); i++ {
			if bytes.Contains(data, []byte(msg[i:i+run])) {
				t.Fatalf("error quotes %d bytes of the file or more: %s", run, line)
			}
		}
	}
}

// servable checks that an accepted spec can be put in force on its own, as
// hot reload does with a new file in an empty apps.d: it loads from disk as
// the same spec, clashes with nothing, and every listen address is one the
// proxy can hand to net.Listen without a resolver (IP literal, localhost or
// nothing, and a port from 1 to 65535).
func servable(t *testing.T, s *Spec, data []byte) {
	t.Helper()
	if errs := CheckConflicts([]*Spec{s}); len(errs) > 0 {
		t.Fatalf("accepted spec clashes with itself: %v", errs)
	}
	for _, l := range s.Listen {
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			t.Fatalf("accepted listen %q: %v", l, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("accepted listen %q: port %q", l, port)
		}
		if _, err := netip.ParseAddr(host); err != nil && host != "" && !strings.EqualFold(host, "localhost") {
			t.Fatalf("accepted listen %q: host %q needs a resolver", l, host)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "app"+filepath.Ext(s.File))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	specs, errs := LoadDir(dir)
	if len(errs) > 0 || len(specs) != 1 {
		t.Fatalf("accepted by Parse, but LoadDir gives %d specs and errors %v", len(specs), errs)
	}
	loaded := *specs[0]
	loaded.File, loaded.Dir = s.File, s.Dir // another directory, same app
	if !loaded.Equal(s) && s.Dir == filepath.Dir(s.File) {
		t.Fatalf("LoadDir and Parse disagree: %+v vs %+v", specs[0], s)
	}
}
