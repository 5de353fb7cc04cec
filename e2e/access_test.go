package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// access_log (a daemon setting, overridden per app) logs one line per
// finished connection, served or not; connections closed unserved are
// counted by reason; status says when an idle app will stop.
func TestAccessLogRefusedConnectionsAndStopsIn(t *testing.T) {
	apps, state, metricsAddr := t.TempDir(), stateDir(t), testutil.FreeAddr(t)
	web, quiet, bad := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	long := func(s string) string { return strings.Replace(s, "idle_timeout: 300ms", "idle_timeout: 10m", 1) }
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), long(testutil.EchoApp(t, web, filepath.Join(t.TempDir(), "pid"), "")))
	testutil.WriteFile(t, filepath.Join(apps, "quiet.yaml"), long(testutil.EchoApp(t, quiet, filepath.Join(t.TempDir(), "pid"), ""))+"access_log: false\n")
	testutil.WriteFile(t, filepath.Join(apps, "bad.yaml"), fmt.Sprintf("listen: %q\ncommand: [%q, -crash]\n", bad, testutil.TestApp(t)))
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\naccess_log: true\n", metricsAddr))
	d := startDaemon(t, apps, "-state", state, "-config", config)

	if got := testutil.EchoOnce(t, web, "hello"); got != "hello" {
		t.Fatalf("echo web = %q", got)
	}
	if got := testutil.EchoOnce(t, quiet, "hush"); got != "hush" {
		t.Fatalf("echo quiet = %q", got)
	}
	d.waitLog(t, `msg=connection`, "app=web", "client=127.0.0.1:", "bytes_in=5 ", "bytes_out=5 ", "duration=", "end=closed")

	// Two connections to an app that cannot start: the first fails with
	// the start, the second meets the backoff.
	for range 2 {
		c, err := net.Dial("tcp", bad)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, _ = c.Read(make([]byte, 1))
		c.Close()
	}
	d.waitLog(t, `msg=connection`, "app=bad", `end="refused: start_failed"`)
	d.waitLog(t, `msg=connection`, "app=bad", `end="refused: backoff"`)
	var out string
	testutil.Eventually(t, 20*time.Second, func() bool {
		out = scrapeMetrics(t, metricsAddr)
		return strings.Contains(out, `dynapm_app_refused_connections_total{app="bad",reason="start_failed"} 1`+"\n") &&
			strings.Contains(out, `dynapm_app_refused_connections_total{app="bad",reason="backoff"} 1`+"\n")
	}, "metrics lack the refused connections:\n%s", &out)
	if strings.Contains(d.out.String(), "app=quiet") && regexp.MustCompile(`msg=connection .*app=quiet`).MatchString(d.out.String()) {
		t.Errorf("an app with access_log: false has access lines:\n%s", d.out)
	}

	// web is idle: it stops in about 10 minutes.
	a := statusOf(t, state, "web")
	stops, err := time.Parse(time.RFC3339Nano, fmt.Sprint(a["stops_at"]))
	if err != nil || time.Until(stops) < 9*time.Minute || time.Until(stops) > 10*time.Minute {
		t.Errorf("stops_at of an idle app with idle_timeout 10m = %v (%v)", a["stops_at"], err)
	}
	code, table, _ := dynapm(t, "status", "-state", state)
	if code != 0 || !regexp.MustCompile(`(?m)^web +ready .* (9m[0-5]\ds|10m00s) `).MatchString(table) {
		t.Errorf("status table does not show web stopping in about 10m:\n%s", table)
	}
}
