package appfile

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestParseIdleKeys(t *testing.T) {
	dir := t.TempDir()
	s, err := Parse(filepath.Join(dir, "web.yaml"), []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if s.IdleWhen != IdleNoConnections || s.IdleAction != IdleStop || s.ClientIdleTimeout != 0 || s.FreezeTimeout != 0 || s.WakeFrom != nil {
		t.Errorf("defaults: %q %q %v %v %v", s.IdleWhen, s.IdleAction, s.ClientIdleTimeout, s.FreezeTimeout, s.WakeFrom)
	}
	s, err = Parse(filepath.Join(dir, "web.yaml"), []byte(minimal+
		"idle_when: traffic\nclient_idle_timeout: 90s\nidle_action: freeze\nfreeze_timeout: 1h\n"+
		"wake_from: [127.0.0.1/32, 10.1.2.3/8, \"::1\", \"::ffff:192.168.0.0/112\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("192.168.0.0/16"),
	}
	if s.IdleWhen != IdleNoTraffic || s.IdleAction != IdleFreeze || s.ClientIdleTimeout != 90*time.Second ||
		s.FreezeTimeout != time.Hour || !slices.Equal(s.WakeFrom, want) {
		t.Errorf("got %q %q %v %v %v", s.IdleWhen, s.IdleAction, s.ClientIdleTimeout, s.FreezeTimeout, s.WakeFrom)
	}
	// One address alone is a list of one.
	s, err = Parse(filepath.Join(dir, "web.yaml"), []byte(minimal+"wake_from: 192.0.2.7\n"))
	if err != nil || !slices.Equal(s.WakeFrom, []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}) {
		t.Errorf("wake_from: 192.0.2.7: %v, %v", s, err)
	}
}

func TestParseIdleKeysErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	cases := []struct{ extra, field, want string }{
		{"idle_when: bytes\n", "idle_when", `expected connections or traffic, got "bytes"`},
		{"idle_action: pause\n", "idle_action", `expected stop or freeze, got "pause"`},
		{"client_idle_timeout: soon\n", "client_idle_timeout", "expected a duration"},
		{"freeze_timeout: -1s\n", "freeze_timeout", "0 or more"},
		{"wake_from: [10.0.0.0/33]\n", "wake_from[0]", "expected a CIDR"},
		{"wake_from: [example.com]\n", "wake_from[0]", "expected a CIDR"},
		{"wake_from: []\n", "wake_from", "at least one"},
		{"wake_from: [10.0.0.1, 10.0.0.1]\n", "wake_from[1]", "listed twice"},
		{"freeze_timeout: 1h\n", "freeze_timeout", "idle_action: freeze only"},
	}
	for _, c := range cases {
		_, err := Parse(path, []byte(minimal+c.extra))
		requireFieldError(t, err, path, c.field, c.want)
	}
	other := "listen: 127.0.0.1:8080\ndriver: command\nstart: x\nstop: y\nupstream: 127.0.0.1:9\nidle_action: freeze\n"
	_, err := Parse(path, []byte(other))
	requireFieldError(t, err, path, "idle_action", "needs driver exec or docker")
}

func TestIdleKeysApplyWithoutRestart(t *testing.T) {
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
	for _, extra := range []string{"idle_when: traffic\n", "client_idle_timeout: 1m\n", "idle_action: freeze\n",
		"idle_action: freeze\nfreeze_timeout: 1m\n", "wake_from: 10.0.0.0/8\n"} {
		if s := parse(extra); s.NeedsRestart(base) || s.Equal(base) {
			t.Errorf("%q: NeedsRestart = %v, Equal = %v; want false, false", extra, s.NeedsRestart(base), s.Equal(base))
		}
	}
}
