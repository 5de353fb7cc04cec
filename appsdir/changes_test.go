package appsdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// waitLogLine waits until the watcher's log has a line holding every part.
func waitLogLine(t *testing.T, r *recorder, parts ...string) string {
	t.Helper()
	var found string
	testutil.Eventually(t, 5*time.Second, func() bool {
		for line := range strings.Lines(r.log()) {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				found = line
				return true
			}
		}
		return false
	}, "no log line with %q:\n%s", parts, r)
	return found
}

func (r *recorder) String() string { return r.log() }

// Every applied change is logged once: an app added, changed (with the
// keys that changed, never env values), removed, and a file that was
// refused and is now fixed, both to a new version and back to the one in
// force. The initial load is "dynapm ready"'s to report.
func TestEveryAppliedChangeIsLoggedOnce(t *testing.T) {
	dir := t.TempDir()
	web := filepath.Join(dir, "web.yaml")
	write(t, web, app(9001, "env: {TOKEN: first-secret}\n"))
	_, r := watch(t, dir, 0)
	if strings.Contains(r.log(), "app added") {
		t.Errorf("the initial load logged each app:\n%s", r.log())
	}

	write(t, filepath.Join(dir, "api.yaml"), app(9002, ""))
	waitLogLine(t, r, `msg="app added"`, "app=api", "file="+filepath.Join(dir, "api.yaml"))

	write(t, web, app(9003, "env: {TOKEN: second-secret}\nidle_timeout: 1m\n"))
	line := waitLogLine(t, r, `msg="app changed"`, "app=web")
	if !strings.Contains(line, "keys=listen,env,idle_timeout") {
		t.Errorf("change not named by its keys: %s", line)
	}

	// Refused, then fixed with a new version.
	write(t, web, app(9003, "idle_timeout: soon\n"))
	waitLogLine(t, r, "app file not applied", "idle_timeout")
	write(t, web, app(9003, "idle_timeout: 2m\n"))
	line = waitLogLine(t, r, `msg="app file fixed"`, "app=web")
	if !strings.Contains(line, "keys=env,idle_timeout") {
		t.Errorf("fix not named by the keys it changed: %s", line)
	}

	// Refused, then put back as it is in force.
	write(t, filepath.Join(dir, "api.yaml"), app(9002, "mode: sometimes\n"))
	waitLogLine(t, r, "app file not applied", "mode")
	write(t, filepath.Join(dir, "api.yaml"), app(9002, ""))
	waitLogLine(t, r, `msg="app file fixed"`, "app=api")

	if err := os.Remove(web); err != nil {
		t.Fatal(err)
	}
	waitLogLine(t, r, `msg="app removed"`, "app=web", "file="+web)

	log := r.log()
	for _, msg := range []string{`msg="app added"`, `msg="app changed"`, `msg="app removed"`} {
		if n := strings.Count(log, msg); n != 1 {
			t.Errorf("%s logged %d times, want once:\n%s", msg, n, log)
		}
	}
	if n := strings.Count(log, `msg="app file fixed"`); n != 2 {
		t.Errorf("app file fixed logged %d times, want twice:\n%s", n, log)
	}
	if strings.Contains(log, "secret") {
		t.Errorf("an env value reached the log:\n%s", log)
	}
}
