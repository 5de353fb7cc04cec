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
)

// stamps reads the "LABEL EVENT UNIXNANO" lines testapp -stamp wrote to
// path, as "LABEL EVENT" in order and the time of each.
func stamps(t *testing.T, path string) ([]string, map[string]time.Time) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var order []string
	at := map[string]time.Time{}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("stamp line %q", line)
		}
		ns, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		key := f[0] + " " + f[1]
		order = append(order, key)
		if _, seen := at[key]; !seen {
			at[key] = time.Unix(0, ns)
		}
	}
	return order, at
}

// stamped is an app running testapp that writes its stamps under label.
func (h *harness) stamped(name, file string, args ...string) *appfile.Spec {
	return h.spec(name, append([]string{"-stamp", file, "-label", name}, args...)...)
}

// The first wake of an app that needs another starts the needed app first
// and spawns the app's program only once the needed one is ready (as the
// programs themselves saw it); the needed app stays up, whatever its idle
// time, while the app runs, and stops after its own idle_timeout once the
// app has stopped.
func TestNeedsStartsChainFirstAndHoldsIt(t *testing.T) {
	h := newHarness(t)
	file := filepath.Join(t.TempDir(), "stamps")
	db := h.stamped("db", file, "-delay", "150ms")
	db.IdleTimeout = 50 * time.Millisecond
	web := h.stamped("web", file)
	web.IdleTimeout = 300 * time.Millisecond
	web.Needs = []string{"db"}
	h.m.Apply([]*appfile.Spec{db, web})

	up, release := h.wake("web")
	if got := echo(t, up, "hi"); got != "hi" {
		t.Fatalf("echo = %q", got)
	}
	_, at := stamps(t, file)
	if at["db listening"].IsZero() || at["web start"].IsZero() || !at["db listening"].Before(at["web start"]) {
		t.Fatalf("db listening at %v, web started at %v: want db ready first", at["db listening"], at["web start"])
	}
	h.waitLog(`msg="app started"`, "app=db", "reason=needed")
	if st := h.status("db"); st.State != Ready || !slices.Equal(st.KeptUpBy, []string{"web"}) || !slices.Equal(st.NeededBy, []string{"web"}) {
		t.Fatalf("db while web runs: %s kept up by %q needed by %q", fmtStatus(st), st.KeptUpBy, st.NeededBy)
	}
	if st := h.status("web"); !slices.Equal(st.Needs, []string{"db"}) {
		t.Fatalf("web needs %q", st.Needs)
	}
	// Many of db's idle timeouts pass while web runs: db stays.
	<-time.After(6 * db.IdleTimeout)
	if st := h.status("db"); st.State != Ready {
		t.Fatalf("db stopped while web runs: %s", fmtStatus(st))
	}
	release()
	h.waitState("web", Stopped)
	webStopped := time.Now()
	h.waitState("db", Stopped)
	if took := time.Since(webStopped); took > 5*time.Second {
		t.Fatalf("db stopped %v after web", took)
	}
	order, at := stamps(t, file)
	if !at["web term"].Before(at["db term"]) {
		t.Fatalf("stop order %q: want web told to stop before db", order)
	}
	if gap := at["db term"].Sub(at["web term"]); gap < db.IdleTimeout {
		t.Fatalf("db stopped %v after web, before its own idle_timeout %v", gap, db.IdleTimeout)
	}
	h.waitLog(`msg="app stopped"`, "app=db", "reason=idle")
}

// A chain of three starts from the far end, and shutdown stops it from the
// near end: dependents before what they need.
func TestNeedsChainOfThreeAndShutdownOrder(t *testing.T) {
	h := newHarness(t)
	file := filepath.Join(t.TempDir(), "stamps")
	a, b, c := h.stamped("a", file), h.stamped("b", file), h.stamped("c", file)
	a.Needs, b.Needs = []string{"b"}, []string{"c"}
	h.m.Apply([]*appfile.Spec{a, b, c})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Start(ctx, "a", "manual"); err != nil {
		t.Fatal(err)
	}
	_, at := stamps(t, file)
	if !at["c listening"].Before(at["b start"]) || !at["b listening"].Before(at["a start"]) {
		t.Fatalf("start times %v: want c ready before b starts, b ready before a starts", at)
	}
	if err := h.m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_, at = stamps(t, file)
	if !at["a term"].Before(at["b term"]) || !at["b term"].Before(at["c term"]) {
		t.Fatalf("stop times a %v, b %v, c %v: want a, b, c", at["a term"], at["b term"], at["c term"])
	}
}

// A needed app that cannot start fails the start of the app that needs
// it, naming it; the app's program is never spawned.
func TestNeedsFailingNeedFailsStart(t *testing.T) {
	h := newHarness(t)
	file := filepath.Join(t.TempDir(), "stamps")
	db := h.spec("db", "-crash")
	web := h.stamped("web", file)
	web.Needs = []string{"db"}
	h.m.Apply([]*appfile.Spec{db, web})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	_, _, err := h.m.Wake(ctx, "web")
	wantErr(t, err, ErrStartFailed)
	if !strings.Contains(err.Error(), `needed app "db"`) {
		t.Fatalf("error %v does not name db", err)
	}
	if order, _ := stamps(t, file); len(order) != 0 {
		t.Fatalf("web's program ran: %q", order)
	}
	// A need that is not configured at all (its file was removed).
	web2 := h.stamped("web", file)
	web2.Needs = []string{"gone"}
	h.m.Apply([]*appfile.Spec{db, web2})
	h.waitState("web", Stopped)
	err = h.m.Start(ctx, "web", "manual")
	wantErr(t, err, ErrUnknownApp)
	if !strings.Contains(err.Error(), `needed app "gone"`) {
		t.Fatalf("error %v does not name gone", err)
	}
}

// Stopping a needed app (by hand, or for memory) stops the apps that run
// and need it first.
func TestNeedsStopStopsDependentsFirst(t *testing.T) {
	h := newHarness(t)
	file := filepath.Join(t.TempDir(), "stamps")
	db, web := h.stamped("db", file), h.stamped("web", file)
	web.Needs = []string{"db"}
	h.m.Apply([]*appfile.Spec{db, web})
	_, release := h.wake("web")
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	for _, u := range h.m.MemoryUsage() {
		if u.Name == "db" && u.Connections == 0 {
			t.Fatalf("db counts no use for memory while web runs: %+v", u)
		}
	}
	if err := h.m.StopForMemory(ctx, "db", "memory: over budget"); err != nil {
		t.Fatal(err)
	}
	if st := h.status("web"); st.State != Stopped {
		t.Fatalf("web after db's memory stop: %s", fmtStatus(st))
	}
	_, at := stamps(t, file)
	if !at["web term"].Before(at["db term"]) {
		t.Fatalf("web stopped at %v, db at %v: want web first", at["web term"], at["db term"])
	}
}
