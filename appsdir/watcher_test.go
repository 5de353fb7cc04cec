package appsdir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is the Apply callback of a test: it keeps every snapshot.
type recorder struct {
	mu    sync.Mutex
	snaps [][]*appfile.Spec
	fail  func(*appfile.Spec) error // optional: apps that cannot be applied
	logs  testutil.Buffer           // the watcher's log
}

// apply keeps Config.Apply's contract as the daemon does: the apps fail
// refuses keep their version in force before (KeepInForce), the others
// are put in force.
func (r *recorder) apply(specs []*appfile.Spec) []AppError {
	r.mu.Lock()
	defer r.mu.Unlock()
	refused := map[*appfile.Spec]error{}
	var prev []*appfile.Spec
	if len(r.snaps) > 0 {
		prev = r.snaps[len(r.snaps)-1]
	}
	if r.fail != nil {
		for _, s := range append(slices.Clone(specs), prev...) {
			if err := r.fail(s); err != nil {
				refused[s] = err
			}
		}
	}
	kept := KeepInForce(specs, prev, func(s *appfile.Spec) bool { return refused[s] != nil })
	var errs []AppError
	for _, s := range specs {
		if err := refused[s]; err != nil {
			ae := AppError{App: s.Name, Err: err}
			for _, k := range kept {
				if k.Name == s.Name {
					ae.InForce = k
				}
			}
			errs = append(errs, ae)
		}
	}
	r.snaps = append(r.snaps, kept)
	return errs
}

func (r *recorder) Write(p []byte) (int, error) { return r.logs.Write(p) }

func (r *recorder) log() string { return r.logs.String() }

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.snaps)
}

// last returns the newest snapshot's spec of app, or nil.
func (r *recorder) last(app string) *appfile.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.snaps) == 0 {
		return nil
	}
	for _, s := range r.snaps[len(r.snaps)-1] {
		if s.Name == app {
			return s
		}
	}
	return nil
}

// watch starts a Watcher on dir with a recorder and stops it at cleanup.
func watch(t *testing.T, dir string, debounce time.Duration, edit ...func(*Config)) (*Watcher, *recorder) {
	t.Helper()
	r := &recorder{}
	cfg := Config{Dir: dir, Apply: r.apply, Debounce: debounce,
		Logger: slog.New(slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, e := range edit {
		e(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, r
}

func app(port int, extra string) string {
	return fmt.Sprintf("listen: \"127.0.0.1:%d\"\ncommand: [\"true\"]\n%s", port, extra)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func idle(s *appfile.Spec) time.Duration {
	if s == nil {
		return -1
	}
	return s.IdleTimeout
}

func TestInitialScanAppliesEveryValidFile(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), app(9001, ""))
	write(t, filepath.Join(dir, "b.json"), `{"listen": "127.0.0.1:9002", "command": "true"}`)
	write(t, filepath.Join(dir, "bad.yaml"), app(9003, "idle_timeout: soon\n"))
	w, r := watch(t, dir, 0)
	if r.count() != 1 || len(w.Snapshot()) != 2 || r.last("a") == nil || r.last("b") == nil {
		t.Fatalf("first snapshot = %v, want apps a and b applied once", w.Snapshot())
	}
	if log := r.log(); !strings.Contains(log, "bad.yaml") || !strings.Contains(log, "idle_timeout") {
		t.Fatalf("log does not name the bad file and field:\n%s", log)
	}
}

func TestNewFileIsApplied(t *testing.T) {
	dir := t.TempDir()
	_, r := watch(t, dir, 0)
	write(t, filepath.Join(dir, "web.yaml"), app(9001, ""))
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("web") != nil }, "new app file not applied")
}

func TestRemovedFileRemovesTheApp(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "web.yaml"), app(9001, ""))
	_, r := watch(t, dir, 0)
	if err := os.Remove(filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return r.count() == 2 && r.last("web") == nil }, "removed app still in force")
}

func TestBurstOfWritesAppliesOnceWithFinalContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	write(t, path, app(9001, "idle_timeout: 1m\n"))
	_, r := watch(t, dir, 500*time.Millisecond)
	// Truncate, then write in pieces, as some editors do.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	content := app(9001, "idle_timeout: 3m\n")
	for i := 0; i < len(content); i += 10 {
		if _, err := f.WriteString(content[i:min(i+10, len(content))]); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	testutil.Eventually(t, 5*time.Second, func() bool { return idle(r.last("web")) == 3*time.Minute }, "final content not applied")
	if n := r.count(); n != 2 {
		t.Fatalf("%d snapshots, want 2 (the first scan and one for the save)", n)
	}
}

func TestRenameOverIsApplied(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	write(t, path, app(9001, "idle_timeout: 1m\n"))
	_, r := watch(t, dir, 0)
	tmp := filepath.Join(dir, ".web.yaml.tmp123")
	write(t, tmp, app(9001, "idle_timeout: 2m\n"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return idle(r.last("web")) == 2*time.Minute }, "rename-over save not applied")
}

func TestVimBackupDanceNeverDropsTheApp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	write(t, path, app(9001, "idle_timeout: 1m\n"))
	_, r := watch(t, dir, 200*time.Millisecond)
	// vim: probe file 4913, rename the original to a backup, write anew,
	// delete the backup.
	write(t, filepath.Join(dir, "4913"), "")
	os.Remove(filepath.Join(dir, "4913"))
	if err := os.Rename(path, path+"~"); err != nil {
		t.Fatal(err)
	}
	write(t, path, app(9001, "idle_timeout: 4m\n"))
	os.Remove(path + "~")
	testutil.Eventually(t, 5*time.Second, func() bool { return idle(r.last("web")) == 4*time.Minute }, "vim save not applied")
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, snap := range r.snaps {
		if len(snap) != 1 {
			t.Errorf("snapshot %d has %d apps: the app was dropped during the save", i, len(snap))
		}
	}
}

func TestConfigMapSymlinkSwapIsApplied(t *testing.T) {
	dir := t.TempDir()
	mustSymlink := func(old, new string) {
		t.Helper()
		if err := os.Symlink(old, new); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "..v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "..v1", "web.yaml"), app(9001, "idle_timeout: 1m\n"))
	mustSymlink("..v1", filepath.Join(dir, "..data"))
	mustSymlink("..data/web.yaml", filepath.Join(dir, "web.yaml"))
	_, r := watch(t, dir, 0)
	if idle(r.last("web")) != time.Minute {
		t.Fatalf("initial ConfigMap layout not loaded")
	}
	if err := os.Mkdir(filepath.Join(dir, "..v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "..v2", "web.yaml"), app(9001, "idle_timeout: 5m\n"))
	mustSymlink("..v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return idle(r.last("web")) == 5*time.Minute }, "ConfigMap swap not applied")
}

func TestTouchWithoutChangeDoesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	write(t, path, app(9001, ""))
	_, r := watch(t, dir, 0)
	write(t, path, app(9001, ""))                             // same bytes
	write(t, path, "# a comment\n"+app(9001, ""))             // same app
	write(t, filepath.Join(dir, "web.yaml.swp"), "garbage")   // editor file
	write(t, filepath.Join(dir, "other.yaml"), app(9002, "")) // a barrier
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("other") != nil }, "barrier app not applied")
	if n := r.count(); n != 2 {
		t.Fatalf("%d snapshots, want 2: a touch, a comment or an editor file caused a reload", n)
	}
}

func TestInvalidEditKeepsTheLastGoodVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	write(t, path, app(9001, "idle_timeout: 1m\n"))
	_, r := watch(t, dir, 0)
	write(t, path, app(9001, "idle_timeout: 1m\nmax_pending: lots\n"))
	testutil.Eventually(t, 5*time.Second, func() bool {
		log := r.log()
		return strings.Contains(log, "web.yaml") && strings.Contains(log, "max_pending") && strings.Contains(log, "last good")
	}, "invalid edit not reported with file, field and 'keeping its last good version':\n%s", r.log())
	if r.count() != 1 || idle(r.last("web")) != time.Minute {
		t.Fatalf("an invalid edit changed what is in force")
	}
	write(t, path, app(9001, "idle_timeout: 2m\n"))
	testutil.Eventually(t, 5*time.Second, func() bool { return idle(r.last("web")) == 2*time.Minute }, "fixed file not applied")
}

func TestClashingNewFileWaitsUntilTheAddressIsFree(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), app(9001, ""))
	_, r := watch(t, dir, 0)
	write(t, filepath.Join(dir, "b.yaml"), app(9001, ""))
	testutil.Eventually(t, 5*time.Second, func() bool {
		log := r.log()
		return strings.Contains(log, "b.yaml") && strings.Contains(log, "a.yaml")
	}, "clash not reported naming both files:\n%s", r.log())
	if r.last("b") != nil || r.last("a") == nil {
		t.Fatalf("a clashing new file displaced the app in force")
	}
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("b") != nil && r.last("a") == nil },
		"b not put in force once a freed the address")
}

func TestAppThatCannotBeAppliedRollsBack(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	write(t, path, app(9001, ""))
	_, r := watch(t, dir, 0)
	r.mu.Lock()
	r.fail = func(s *appfile.Spec) error {
		if s.Listen[0] == "127.0.0.1:9009" {
			return errors.New("listen: cannot bind 127.0.0.1:9009")
		}
		return nil
	}
	r.mu.Unlock()
	write(t, path, app(9009, ""))
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(r.log(), "cannot bind") },
		"apply error not logged:\n%s", r.log())
	if s := r.last("web"); s == nil || s.Listen[0] != "127.0.0.1:9001" {
		t.Fatalf("app not rolled back to its last good version: %+v", s)
	}
}

func TestRescanFindsChangesWithoutEvents(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	target := filepath.Join(elsewhere, "web.yaml")
	write(t, target, app(9001, "idle_timeout: 1m\n"))
	if err := os.Symlink(target, filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	w, r := watch(t, dir, 0)
	write(t, target, app(9001, "idle_timeout: 7m\n")) // no event in dir
	w.Rescan()
	testutil.Eventually(t, 5*time.Second, func() bool { return idle(r.last("web")) == 7*time.Minute }, "rescan missed the change")
}

func TestFileWrittenAgainAndAgainDoesNotHoldBackAnother(t *testing.T) {
	dir := t.TempDir()
	busy := filepath.Join(dir, "busy.yaml")
	write(t, busy, app(9001, ""))
	_, r := watch(t, dir, 200*time.Millisecond)
	write(t, filepath.Join(dir, "quiet.yaml"), app(9002, ""))
	// Keep busy.yaml changing far more often than the debounce, for at
	// most 500 writes or 10 s: quiet.yaml must be applied meanwhile.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 500 && time.Now().Before(deadline) && r.last("quiet") == nil; i++ {
		write(t, busy, app(9001, fmt.Sprintf("idle_timeout: %dm\n", i+1)))
		time.Sleep(20 * time.Millisecond) // the pace of the writer, not synchronisation
	}
	if r.last("quiet") == nil {
		t.Fatal("a file written again and again held back the reload of another")
	}
}

func TestAppRejectedByApplyIsRetriedWithoutAnEdit(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "other.yaml"), app(9001, ""))
	var blocked sync.Mutex // held while 127.0.0.1:9009 is "taken"
	taken := true
	_, r := watch(t, dir, 0, func(c *Config) { c.Retry = 20 * time.Millisecond })
	r.mu.Lock()
	r.fail = func(s *appfile.Spec) error {
		blocked.Lock()
		defer blocked.Unlock()
		if taken && s.Listen[0] == "127.0.0.1:9009" {
			return errors.New("listen: address already in use")
		}
		return nil
	}
	r.mu.Unlock()
	write(t, filepath.Join(dir, "web.yaml"), app(9009, ""))
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(r.log(), "already in use") },
		"apply error not logged:\n%s", r.log())
	if r.last("web") != nil || r.last("other") == nil {
		t.Fatal("a rejected app is in force, or another app was dropped")
	}
	blocked.Lock()
	taken = false
	blocked.Unlock()
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("web") != nil }, "app not retried once its address was free")
	if n := strings.Count(r.log(), "already in use"); n != 1 {
		t.Fatalf("the same apply error was logged %d times, want once", n)
	}
}

// The default apps dir is relative (./apps.d): removing a file there must
// remove its app like anywhere else.
func TestRelativeDirRemovesApps(t *testing.T) {
	parent := t.TempDir()
	t.Chdir(parent)
	if err := os.Mkdir("apps.d", 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join("apps.d", "web.yaml"), app(9001, ""))
	write(t, filepath.Join("apps.d", "other.yaml"), app(9002, ""))
	_, r := watch(t, "./apps.d", 0)
	if r.last("web") == nil {
		t.Fatal("app in a relative dir not loaded")
	}
	if err := os.Remove(filepath.Join("apps.d", "web.yaml")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("web") == nil && r.last("other") != nil },
		"app removed from a relative apps dir is still in force")
}

// Each retry that fails again waits twice as long as the one before (up to
// 32 × Retry): a retry applies every app again, too costly to repeat every
// 2 s with thousands of apps while one port stays taken.
func TestRetriesOfARejectedAppBackOff(t *testing.T) {
	dir := t.TempDir()
	const retry = 10 * time.Millisecond
	var mu sync.Mutex
	var tries []time.Time // of the rejected app, the first one included
	_, r := watch(t, dir, 0, func(c *Config) { c.Retry = retry })
	r.mu.Lock()
	r.fail = func(s *appfile.Spec) error {
		if s.Listen[0] != "127.0.0.1:9009" {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		tries = append(tries, time.Now())
		return errors.New("listen: address already in use")
	}
	r.mu.Unlock()
	write(t, filepath.Join(dir, "web.yaml"), app(9009, ""))
	testutil.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(tries) >= 6
	}, "the rejected app was not retried 5 times")
	mu.Lock()
	defer mu.Unlock()
	// Timers never fire early: each wait is at least the doubled one.
	for i := 1; i < 6; i++ {
		want := retry << (i - 1)
		if gap := tries[i].Sub(tries[i-1]); gap < want {
			t.Errorf("retry %d came %v after the try before, want at least %v", i, gap, want)
		}
	}
}

// One app Apply refuses never holds back another change of the same
// reload: the refused app keeps the version Apply kept (AppError.InForce)
// and is retried, the other change is in force at once.
func TestAnAppApplyRefusesDoesNotHoldBackTheOthers(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "web.yaml"), app(9001, ""))
	write(t, filepath.Join(dir, "gone.yaml"), app(9003, ""))
	_, r := watch(t, dir, 0, func(c *Config) { c.Retry = 20 * time.Millisecond })
	var mu sync.Mutex
	refuse := true
	r.mu.Lock()
	r.fail = func(s *appfile.Spec) error {
		mu.Lock()
		defer mu.Unlock()
		if refuse && s.Listen[0] == "127.0.0.1:9009" {
			return errors.New("listen: address already in use")
		}
		return nil
	}
	r.mu.Unlock()
	write(t, filepath.Join(dir, "web.yaml"), app(9009, "")) // refused: 9001 stays
	write(t, filepath.Join(dir, "new.yaml"), app(9002, ""))
	if err := os.Remove(filepath.Join(dir, "gone.yaml")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("new") != nil && r.last("gone") == nil },
		"the other changes were held back by the refused app")
	if s := r.last("web"); s == nil || s.Listen[0] != "127.0.0.1:9001" {
		t.Fatalf("the refused app's version in force = %+v, want its last good one on 9001", s)
	}
	mu.Lock()
	refuse = false
	mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() bool { s := r.last("web"); return s != nil && s.Listen[0] == "127.0.0.1:9009" },
		"the refused version was not retried once Apply took it")
}

// An app Apply no longer takes even as it is in force goes out of force,
// and is tried again like a new version.
func TestAnAppInForceApplyRefusesGoesOutAndIsRetried(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "web.yaml"), app(9001, ""))
	_, r := watch(t, dir, 0, func(c *Config) { c.Retry = 20 * time.Millisecond })
	var mu sync.Mutex
	refuse := true
	r.mu.Lock()
	r.fail = func(s *appfile.Spec) error {
		mu.Lock()
		defer mu.Unlock()
		if refuse && s.Name == "web" {
			return errors.New("refused now")
		}
		return nil
	}
	r.mu.Unlock()
	write(t, filepath.Join(dir, "other.yaml"), app(9002, "")) // a reload
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("other") != nil && r.last("web") == nil },
		"the app Apply refuses is still in force")
	mu.Lock()
	refuse = false
	mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("web") != nil }, "the app was not retried")
}

func TestKeepInForceFallsBackToThePreviousVersionThenToNothing(t *testing.T) {
	old, next := &appfile.Spec{Name: "web"}, &appfile.Spec{Name: "web"}
	added, kept := &appfile.Spec{Name: "new"}, &appfile.Spec{Name: "kept"}
	refused := map[*appfile.Spec]bool{next: true, added: true}
	got := KeepInForce([]*appfile.Spec{kept, added, next}, []*appfile.Spec{kept, old}, func(s *appfile.Spec) bool { return refused[s] })
	if len(got) != 2 || got[0] != kept || got[1] != old {
		t.Fatalf("KeepInForce = %v, want kept and the previous web", got)
	}
	refused[old] = true
	got = KeepInForce([]*appfile.Spec{kept, next}, []*appfile.Spec{kept, old}, func(s *appfile.Spec) bool { return refused[s] })
	if len(got) != 1 || got[0] != kept {
		t.Fatalf("KeepInForce with both versions refused = %v, want only kept", got)
	}
}
