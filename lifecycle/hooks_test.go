package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// hookLine is a hook that appends "APP HOOK REASON GREETING" to file and
// says "hook HOOK" on its output (the app's log).
func hookLine(file, which string) []string {
	return []string{"/bin/sh", "-c", `echo "$DYNAPM_APP ` + which + ` $DYNAPM_REASON $GREETING" >> "$0"; echo "hook ` + which + `"`, file}
}

// readLines returns the lines of file, none when it does not exist.
func readLines(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
}

// The four hooks run in order, as the app's program runs (its env), with
// why the app starts or stops, their output in the app's log.
func TestHooksRunInOrderWithTheirReasons(t *testing.T) {
	h := newHarness(t, withStartGroup)
	file := filepath.Join(t.TempDir(), "hooks")
	spec := h.spec("web")
	spec.Env = map[string]string{"GREETING": "hi"}
	spec.Hooks = appfile.Hooks{
		BeforeStart: hookLine(file, "before_start"), AfterStart: hookLine(file, "after_start"),
		BeforeStop: hookLine(file, "before_stop"), AfterStop: hookLine(file, "after_stop"),
	}
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	testutil.Eventually(t, mgrWait, func() bool { return len(readLines(t, file)) == 2 }, "after_start did not run: %q", readLines(t, file))
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Stop(ctx, "web", "manual"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, mgrWait, func() bool { return len(readLines(t, file)) == 4 }, "after_stop did not run: %q", readLines(t, file))
	want := []string{"web_before_start_connection_hi", "web_after_start_connection_hi", "web_before_stop_manual_hi", "web_after_stop_manual_hi"}
	if got := readLines(t, file); !slices.Equal(got, want) {
		t.Fatalf("hooks ran %q, want %q", got, want)
	}
	log, err := os.ReadFile(filepath.Join(h.cfg.StateDir, "logs", "web.log"))
	if err != nil || !strings.Contains(string(log), "hook before_start\n") || !strings.Contains(string(log), "hook after_stop\n") {
		t.Fatalf("app log (%v) lacks the hooks' output:\n%s", err, log)
	}
	h.waitLog(`msg="hook ran"`, "app=web", "hook=after_stop", "reason=manual")
}

// A failing before_start fails the start, naming the hook, and the
// program never runs.
func TestFailingBeforeStartFailsTheStart(t *testing.T) {
	h := newHarness(t, withStartGroup)
	stampFile := filepath.Join(t.TempDir(), "stamps")
	spec := h.stamped("web", stampFile)
	spec.Hooks.BeforeStart = []string{"/bin/sh", "-c", "echo no database; exit 3"}
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	_, _, err := h.m.Wake(ctx, "web")
	wantErr(t, err, ErrStartFailed)
	if !strings.Contains(err.Error(), "before_start hook: exit status 3") {
		t.Fatalf("error %v does not name the hook", err)
	}
	if order, _ := stamps(t, stampFile); len(order) != 0 {
		t.Fatalf("the program ran: %q", order)
	}
	h.waitLog(`msg="hook failed"`, "app=web", "hook=before_start")
}

// A hook that hangs is killed, with what it started, at hook_timeout; a
// before_start that hangs fails the start then.
func TestHangingHookIsKilledAtHookTimeout(t *testing.T) {
	h := newHarness(t, withStartGroup)
	pidfile := filepath.Join(t.TempDir(), "pid")
	spec := h.spec("web")
	spec.HookTimeout = 200 * time.Millisecond
	spec.Hooks.BeforeStart = []string{"/bin/sh", "-c", `sleep 60 & echo $! > "$0"; wait`, pidfile}
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	began := time.Now()
	err := h.m.Start(ctx, "web", "manual")
	wantErr(t, err, ErrStartFailed)
	if !strings.Contains(err.Error(), "before_start hook: killed: still running after") {
		t.Fatalf("error %v does not say the hook was killed", err)
	}
	if took := time.Since(began); took < spec.HookTimeout || took > 10*time.Second {
		t.Fatalf("start failed after %v, want about hook_timeout %v", took, spec.HookTimeout)
	}
	b, _ := os.ReadFile(pidfile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		t.Fatalf("pid file %q", b)
	}
	testutil.Eventually(t, mgrWait, func() bool { return !testutil.ProcessAlive(pid) }, "the hook's child %d outlived hook_timeout", pid)
}

// The next start waits for the after_stop hook of the last stop: a
// backup never races the program.
func TestNextStartWaitsForAfterStop(t *testing.T) {
	h := newHarness(t, withStartGroup)
	dir := t.TempDir()
	stampFile := filepath.Join(dir, "stamps")
	done := filepath.Join(dir, "backup-done")
	spec := h.stamped("web", stampFile)
	spec.Hooks.AfterStop = []string{"/bin/sh", "-c", `sleep 0.3; date +%s%N > "$0"`, done}
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Start(ctx, "web", "manual"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Stop(ctx, "web", "manual"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Start(ctx, "web", "manual"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(done)
	if err != nil {
		t.Fatalf("the second start did not wait for after_stop: %v", err)
	}
	ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	var second time.Time // the second "web start" stamp
	data, _ := os.ReadFile(stampFile)
	n := 0
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) == 3 && f[1] == "start" {
			if n++; n == 2 {
				v, _ := strconv.ParseInt(f[2], 10, 64)
				second = time.Unix(0, v)
			}
		}
	}
	if second.IsZero() || !time.Unix(0, ns).Before(second) {
		t.Fatalf("after_stop finished at %v, the second start at %v", time.Unix(0, ns), second)
	}
}

// A hook runs as the app's user, as its program does.
func TestHookRunsAsTheAppsUser(t *testing.T) {
	uid := uidSeenAsNobody(t, "hook", func(spec *appfile.Spec, cmd []string) { spec.Hooks.BeforeStart = cmd })
	if uid != "65534" {
		t.Fatalf("the hook ran as uid %q, want 65534", uid)
	}
}
