package appsdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/internal/trust"
)

// The attack: a chmod 777 of a running daemon's apps directory went
// unnoticed, and the next file anyone dropped there was served. Now the
// chmod is seen at once: reloads from the directory are refused, loudly,
// the apps in force stay, and once it is fixed every file is read again.
func TestAppsDirMadeWritableWhileRunningRefusesReloadsUntilFixed(t *testing.T) {
	dir := t.TempDir() // root's, 0700, under sticky /tmp: trusted
	write(t, filepath.Join(dir, "a.yaml"), app(9001, "idle_timeout: 1m\n"))
	w, r := watch(t, dir, time.Millisecond, func(c *Config) { c.Trust, c.Recheck = &trust.Checker{UID: 0}, time.Hour })
	if idle(r.last("a")) != time.Minute {
		t.Fatalf("a not applied at start:\n%s", r.log())
	}

	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(r.log(), `level=ERROR msg="apps directory cannot be trusted: not reloading from it; the apps in force stay as they are"`) &&
			strings.Contains(r.log(), "is writable by group or others (mode 0777); fix it with: chmod go-w "+dir)
	}, "the chmod of the apps directory was not reported:\n%s", r.log())

	write(t, filepath.Join(dir, "b.yaml"), app(9002, ""))
	write(t, filepath.Join(dir, "a.yaml"), app(9001, "idle_timeout: 5m\n"))
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(r.log(), `level=DEBUG msg="reload refused: the apps directory cannot be trusted"`)
	}, "no reload was refused:\n%s", r.log())
	if r.last("b") != nil || idle(r.last("a")) != time.Minute {
		t.Fatalf("reloaded from an apps directory anyone can write: %v", w.Snapshot())
	}

	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return r.last("b") != nil && idle(r.last("a")) == 5*time.Minute },
		"the changes made meanwhile were not applied once the directory was fixed:\n%s", r.log())
	if !strings.Contains(r.log(), `msg="apps directory can be trusted again; reloading from it"`) {
		t.Errorf("the return of trust was not logged:\n%s", r.log())
	}
}

// A directory above the apps directory made writable sends no event: the
// periodic check finds it.
func TestADirectoryAboveTheAppsDirMadeWritableIsFoundByTheRecheck(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "apps")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, r := watch(t, dir, 0, func(c *Config) { c.Trust = &trust.Checker{UID: 0}; c.Recheck = 10 * time.Millisecond })
	if err := os.Chmod(base, 0o775); err != nil {
		t.Fatal(err)
	}
	want := base + ", on the way to the apps directory " + dir + ", is writable by group or others (mode 0775); fix it with: chmod go-w " + base
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(r.log(), want) },
		"a directory above the apps directory made writable was not reported:\n%s", r.log())
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(r.log(), "can be trusted again") },
		"the fix was not noticed:\n%s", r.log())
}

func TestNewRefusesAnAppsDirThatCannotBeTrusted(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Dir: dir, Apply: (&recorder{}).apply, Trust: &trust.Checker{UID: 0}})
	if err == nil || !strings.Contains(err.Error(), "apps directory "+dir+" is writable by group or others (mode 0770); fix it with: chmod go-w "+dir) {
		t.Fatalf("New: %v", err)
	}
}

// The attack: a user made an app's log start with a YAML document and
// linked apps.d/pwn.yaml to STATE/logs/adv.log, a file root owns. No app
// file may resolve into the state directory, and a file reached through a
// directory anyone can write is anyone's.
func TestAnAppFileLinkedIntoTheStateDirOrAnOpenDirIsRefused(t *testing.T) {
	base := t.TempDir()
	dir, state, open := filepath.Join(base, "apps"), filepath.Join(base, "state"), filepath.Join(base, "open")
	for _, d := range []string{dir, state, filepath.Join(state, "logs"), open} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	adv := filepath.Join(state, "logs", "adv.log")
	write(t, adv, app(9001, ""))
	write(t, filepath.Join(open, "x.yaml"), app(9002, ""))
	pwn, openLink := filepath.Join(dir, "pwn.yaml"), filepath.Join(dir, "x.yaml")
	for link, target := range map[string]string{pwn: adv, openLink: filepath.Join(open, "x.yaml")} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(dir, "good.yaml"), app(9003, ""))
	w, r := watch(t, dir, 0, func(c *Config) { c.Trust = &trust.Checker{UID: 0, Private: []string{state}} })
	if r.last("good") == nil || r.last("pwn") != nil || r.last("x") != nil {
		t.Fatalf("snapshot %v, want good alone", w.Snapshot())
	}
	for _, want := range []string{
		pwn + ": app file resolves to " + adv + ", inside the state directory " + state,
		openLink + ": " + open + ", on the way to the app file, is writable by group or others (mode 0777); fix it with: chmod go-w " + open,
	} {
		if !strings.Contains(r.log(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.log())
		}
	}
}
