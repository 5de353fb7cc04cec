package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// httpGet returns the body of GET http://addr/, or "" on any error.
func httpGet(addr string) string {
	// No keep-alive: no connection (and goroutine) outlives the request.
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Two apps of an exclusive group, through the daemon: each wake stops the
// other first, and each client is answered by the app it asked for.
func TestExclusiveGroupRunsOneAppAtATime(t *testing.T) {
	t.Parallel()
	apps, state := t.TempDir(), stateDir(t)
	stamps := filepath.Join(t.TempDir(), "stamps")
	addrs := map[string]string{"a": testutil.FreeAddr(t), "b": testutil.FreeAddr(t)}
	for name, addr := range addrs {
		testutil.WriteFile(t, filepath.Join(apps, name+".yaml"), fmt.Sprintf(
			"listen: %q\ncommand: [%q, \"-mode\", \"http\", \"-stamp\", %q, \"-label\", %q]\nenv: {GREETING: %s}\nexclusive: gpu\nidle_timeout: 1h\nstop_timeout: 2s\n",
			addr, testutil.TestApp(t), stamps, name, name))
	}
	d := startDaemon(t, apps, "-state", state)
	if got := httpGet(addrs["a"]); got != "ok a" {
		t.Fatalf("a answered %q", got)
	}
	if got := httpGet(addrs["b"]); got != "ok b" {
		t.Fatalf("b answered %q", got)
	}
	d.waitLog(t, `msg="app stopped"`, "app=a", "reason=exclusive")
	if a := statusOf(t, state, "a"); a["state"] != "stopped" || a["exclusive"] != "gpu" {
		t.Fatalf("a while b runs: %v", a)
	}
	at := stampTimes(t, stamps)
	if !at["a term"].Before(at["b start"]) {
		t.Fatalf("a told to stop at %v, b started at %v", at["a term"], at["b start"])
	}
	if got := httpGet(addrs["a"]); got != "ok a" {
		t.Fatalf("a answered %q after b", got)
	}
	d.waitLog(t, `msg="app stopped"`, "app=b", "reason=exclusive")
}

// The hooks of a wake and an idle stop run in order with their reasons,
// their output in the app's log; a failing before_start gives the held
// client the unavailable_reply.
func TestHooksAroundAWakeAndAnIdleStop(t *testing.T) {
	t.Parallel()
	apps, state := t.TempDir(), stateDir(t)
	out := filepath.Join(t.TempDir(), "hooks")
	hook := func(which string) string {
		return fmt.Sprintf(`"echo $DYNAPM_APP %s $DYNAPM_REASON >> %s; echo hook %s said"`, which, out, which)
	}
	web, broken := testutil.FreeAddr(t), testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), testutil.EchoApp(t, web, filepath.Join(t.TempDir(), "pid"), "")+
		fmt.Sprintf("hooks:\n  before_start: %s\n  after_start: %s\n  before_stop: %s\n  after_stop: %s\n",
			hook("before_start"), hook("after_start"), hook("before_stop"), hook("after_stop")))
	testutil.WriteFile(t, filepath.Join(apps, "broken.yaml"), testutil.EchoApp(t, broken, filepath.Join(t.TempDir(), "pid"), "")+
		"hooks: {before_start: \"echo the database is gone; exit 1\"}\nunavailable_reply: \"-ERR unavailable\\r\\n\"\n")
	d := startDaemon(t, apps, "-state", state)

	if !tryEcho(web, "hi") {
		t.Fatal("web not served")
	}
	d.waitLog(t, `msg="app stopped"`, "app=web", "reason=idle")
	d.waitLog(t, `msg="hook ran"`, "app=web", "hook=after_stop", "reason=idle")
	b, _ := os.ReadFile(out)
	got := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{"web before_start connection", "web after_start connection", "web before_stop idle", "web after_stop idle"}
	if !slices.Equal(got, want) {
		t.Fatalf("hooks ran %q, want %q", got, want)
	}
	if log := dynapmOK(t, "logs", "web", "-state", state); !strings.Contains(log, "hook before_start said") || !strings.Contains(log, "hook after_stop said") {
		t.Fatalf("the app's log lacks the hooks' output:\n%s", log)
	}

	if got, _ := request(t, broken, "PING\r\n"); got != "-ERR unavailable\r\n" {
		t.Fatalf("client of an app whose before_start fails got %q", got)
	}
	d.waitLog(t, `msg="app failed to start"`, "app=broken", "before_start hook: exit status 1")
}
