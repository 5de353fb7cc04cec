package admin

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOverridesSaveAndLoad(t *testing.T) {
	dir := t.TempDir()
	if got, err := LoadOverrides(dir); err != nil || got != nil {
		t.Fatalf("no file: %+v, %v", got, err)
	}
	until := time.Date(2026, 1, 2, 21, 30, 0, 0, time.UTC)
	want := []Override{{App: "db", Disabled: true}, {App: "web", Pinned: true, PinnedUntil: until}}
	if err := SaveOverrides(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadOverrides(dir)
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1].App != "web" || !got[1].PinnedUntil.Equal(until) {
		t.Fatalf("loaded %+v, %v; want %+v", got, err, want)
	}
	fi, err := os.Stat(filepath.Join(dir, "overrides.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("overrides.json: %v, %v; want mode 0600", fi, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("state dir holds %d entries, want only overrides.json (no temporary file left)", len(entries))
	}
}

// A symlink planted where the overrides go is neither read through nor
// written through: the save replaces the link itself.
func TestOverridesNeverFollowASymlink(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	target := filepath.Join(elsewhere, "target")
	if err := os.WriteFile(target, []byte(`[{"app":"web","disabled":true}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "overrides.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadOverrides(dir); err == nil {
		t.Fatalf("read through a symlink: %+v", got)
	}
	if err := SaveOverrides(dir, []Override{{App: "db", Pinned: true}}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(target); string(data) != `[{"app":"web","disabled":true}]` {
		t.Fatalf("the symlink's target was written: %q", data)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("overrides.json after the save: %v, %v; want a regular file", fi, err)
	}
}

func TestOverrideEndpoints(t *testing.T) {
	ctl := newTestController("web")
	_, c, _ := startServer(t, ctl)
	ctx := context.Background()
	a, err := c.Override(ctx, "web", OverrideRequest{Action: "pin", For: 2 * time.Hour})
	if err != nil || !a.Pinned {
		t.Fatalf("pin: %+v, %v", a, err)
	}
	if a, err = c.Override(ctx, "web", OverrideRequest{Action: "disable"}); err != nil || !a.Disabled {
		t.Fatalf("disable: %+v, %v", a, err)
	}
	for _, verb := range []string{"unpin", "enable"} {
		if _, err := c.Override(ctx, "web", OverrideRequest{Action: verb}); err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
	}
	ctl.mu.Lock()
	got := ctl.overrides
	ctl.mu.Unlock()
	if len(got) != 4 || got[0] != (OverrideRequest{Action: "pin", For: 2 * time.Hour}) || got[3].Action != "enable" {
		t.Fatalf("controller saw %+v", got)
	}
	if _, err := c.Override(ctx, "nope", OverrideRequest{Action: "disable"}); !errors.Is(err, ErrUnknownApp) {
		t.Fatalf("unknown app: %v", err)
	}
	_, err = c.actionQuery(ctx, "web", "pin", map[string][]string{"for": {"soon"}})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Fatalf("pin -for soon: %v, want a 400", err)
	}
}
