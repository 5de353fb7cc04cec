package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// Apps that need other apps (needs:), end to end.

// stampedApp is an app file running testapp's echo server that writes its
// start, listening and term stamps to stamps under its own name.
func stampedApp(t *testing.T, name, listen, stamps, extra string) string {
	return fmt.Sprintf("listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-stamp\", %q, \"-label\", %q]\nstart_timeout: 20s\nstop_timeout: 2s\n%s",
		listen, testutil.TestApp(t), stamps, name, extra)
}

// stampTimes reads testapp's stamps: "LABEL EVENT" to its first time.
func stampTimes(t *testing.T, path string) map[string]time.Time {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
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
		if key := f[0] + " " + f[1]; at[key].IsZero() {
			at[key] = time.Unix(0, ns)
		}
	}
	return at
}

func jsonStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// The first connection to a web app that needs a database app is answered;
// the database's program was listening before the web app's program
// started; status shows the link both ways; the database stays up while
// the web app runs and stops after its own idle time once the web app
// stopped.
func TestNeedsWebAppWaitsForItsDatabase(t *testing.T) {
	t.Parallel()
	apps, state := t.TempDir(), stateDir(t)
	stamps := filepath.Join(t.TempDir(), "stamps")
	dbAddr, webAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "db.yaml"), stampedApp(t, "db", dbAddr, stamps, "idle_timeout: 200ms\n"))
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), stampedApp(t, "web", webAddr, stamps, "idle_timeout: 1s\nneeds: [db]\n"))
	d := startDaemon(t, apps, "-state", state)

	conn := dialOpen(t, webAddr)
	conn.echo(t, "first")
	at := stampTimes(t, stamps)
	if !at["db listening"].Before(at["web start"]) {
		t.Fatalf("db listening at %v, web started at %v: want db first", at["db listening"], at["web start"])
	}
	if got := jsonStrings(statusOf(t, state, "web")["needs"]); !slices.Equal(got, []string{"db"}) {
		t.Fatalf("web's needs in status -json: %q", got)
	}
	db := statusOf(t, state, "db")
	if db["state"] != "ready" || !slices.Equal(jsonStrings(db["needed_by"]), []string{"web"}) {
		t.Fatalf("db in status -json: %v", db)
	}
	code, out, _ := dynapm(t, "status", "-state", state)
	if code != 0 || !strings.Contains(out, "ready (needed by web)") {
		t.Fatalf("status table (exit %d) does not say why db is up:\n%s", code, out)
	}
	// Several of db's idle timeouts while web runs: db stays.
	<-time.After(time.Second)
	if s := statusOf(t, state, "db")["state"]; s != "ready" {
		t.Fatalf("db %v while web runs", s)
	}
	conn.c.Close()
	d.waitLog(t, `msg="app stopped"`, "app=web", "reason=idle")
	d.waitLog(t, `msg="app stopped"`, "app=db", "reason=idle")
	at = stampTimes(t, stamps)
	if gap := at["db term"].Sub(at["web term"]); gap < 200*time.Millisecond {
		t.Fatalf("db stopped %v after web: before its own idle_timeout", gap)
	}
}

// A needed app may run on another driver: here a command app whose start
// launches the program in the background.
func TestNeedsAcrossDrivers(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	work := t.TempDir()
	stamps := filepath.Join(work, "stamps")
	svcAddr, svcUp, webAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	start := fmt.Sprintf("%s -mode echo -listen %s -stamp %s -label svc -pidfile %s &", testutil.TestApp(t), svcUp, stamps, filepath.Join(work, "svc.pid"))
	testutil.WriteFile(t, filepath.Join(apps, "svc.yaml"), fmt.Sprintf(
		"listen: %q\nupstream: %q\ndriver: command\nstart: %q\nstop: %q\nidle_timeout: 1h\n",
		svcAddr, svcUp, start, "kill $(cat "+filepath.Join(work, "svc.pid")+")"))
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), stampedApp(t, "web", webAddr, stamps, "idle_timeout: 1h\nneeds: svc\n"))
	startDaemon(t, apps)
	if got := testutil.EchoOnce(t, webAddr, "hi"); got != "hi" {
		t.Fatalf("echo = %q", got)
	}
	at := stampTimes(t, stamps)
	if !at["svc listening"].Before(at["web start"]) {
		t.Fatalf("svc listening at %v, web started at %v: want svc first", at["svc listening"], at["web start"])
	}
}

// A cycle is refused by check, naming it, and by a running daemon, whose
// other apps keep serving.
func TestNeedsCycleRefusedByCheckAndDaemon(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	other := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "other.yaml"), echoAppOn(t, []string{other}, filepath.Join(t.TempDir(), "pid"), ""))
	d := startDaemon(t, apps)
	conn := dialOpen(t, other)
	conn.echo(t, "before")

	testutil.WriteFile(t, filepath.Join(apps, "a.yaml"), echoAppOn(t, []string{testutil.FreeAddr(t)}, filepath.Join(t.TempDir(), "pid"), "")+"needs: [b]\n")
	testutil.WriteFile(t, filepath.Join(apps, "b.yaml"), echoAppOn(t, []string{testutil.FreeAddr(t)}, filepath.Join(t.TempDir(), "pid"), "")+"needs: [a]\n")
	d.waitLog(t, "app file not applied", "b.yaml: needs[0]", `closes a cycle: b -> a -> b`)
	conn.echo(t, "after")
	if !tryEcho(other, "fresh") {
		t.Fatal("other app not served after the cycle was refused")
	}

	code, out, _ := dynapm(t, "check", "-apps", apps)
	if code != 1 || !strings.Contains(out, `b.yaml: needs[0]: "a" closes a cycle: b -> a -> b`) {
		t.Fatalf("check: exit %d, output:\n%s", code, out)
	}
}

// SIGTERM to the daemon stops the app that needs another before the app
// it needs.
func TestNeedsDaemonShutdownStopsDependentsFirst(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	stamps := filepath.Join(t.TempDir(), "stamps")
	webAddr := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "db.yaml"), stampedApp(t, "db", testutil.FreeAddr(t), stamps, "idle_timeout: 1h\n"))
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), stampedApp(t, "web", webAddr, stamps, "idle_timeout: 1h\nneeds: [db]\n"))
	d := startDaemon(t, apps)
	if got := testutil.EchoOnce(t, webAddr, "hi"); got != "hi" {
		t.Fatalf("echo = %q", got)
	}
	stopDaemon(t, d)
	at := stampTimes(t, stamps)
	if at["web term"].IsZero() || !at["web term"].Before(at["db term"]) {
		t.Fatalf("web told to stop at %v, db at %v: want web first", at["web term"], at["db term"])
	}
}
