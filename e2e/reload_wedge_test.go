package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

// The wedge of issue 19: with a file refused for its owner and a file
// whose port is held by another program in apps.d, a new app's port was
// bound but never accepted, a removed app kept being served, and the log
// repeated "cannot put the last good version of an app back in force".
// One bad app must never hold back the others.
func TestReloadNeverWedgesOnARefusedFileAndATakenPort(t *testing.T) {
	t.Parallel()
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { squatter.Close() })
	reloadDespiteABlockedApp(t, squatter.Addr().String(), "already in use")
}

// The same with an app on the daemon's own metrics address: refused by
// name, and the others go on.
func TestReloadNeverWedgesOnAnAppOnTheMetricsAddress(t *testing.T) {
	t.Parallel()
	metricsAddr := testutil.FreeAddr(t)
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\n", metricsAddr))
	reloadDespiteABlockedApp(t, metricsAddr, "the daemon's metrics address", "-config", config)
	if m := scrapeMetrics(t, metricsAddr); !strings.Contains(m, "dynapm_apps") {
		t.Errorf("the metrics endpoint no longer serves the daemon's metrics:\n%s", m)
	}
}

// reloadDespiteABlockedApp runs a daemon whose apps.d holds a refused
// file and an app on blocked (which the daemon cannot listen on, for the
// reason logged as why), adds an app and removes another: the added one
// must be served, the removed one's port closed.
func reloadDespiteABlockedApp(t *testing.T, blocked, why string, daemonArgs ...string) {
	t.Helper()
	apps := t.TempDir()
	pid := func() string { return filepath.Join(t.TempDir(), "pid") }
	refusedAddr, keep, gone, added := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	refusedFile := filepath.Join(apps, "refused.yaml")
	testutil.WriteFile(t, refusedFile, echoAppOn(t, []string{refusedAddr}, pid(), ""))
	refuse(t, refusedFile)
	testutil.WriteFile(t, filepath.Join(apps, "blocked.yaml"), echoAppOn(t, []string{blocked}, pid(), ""))
	testutil.WriteFile(t, filepath.Join(apps, "keep.yaml"), echoAppOn(t, []string{keep}, pid(), ""))
	testutil.WriteFile(t, filepath.Join(apps, "gone.yaml"), echoAppOn(t, []string{gone}, pid(), ""))
	d := startDaemon(t, apps, daemonArgs...)
	d.waitLog(t, "blocked.yaml", "listen[0]", why)
	for _, addr := range []string{keep, gone} {
		if !tryEcho(addr, "before") {
			t.Fatalf("%s is not served beside a refused file and a blocked app", addr)
		}
	}

	testutil.WriteFile(t, filepath.Join(apps, "added.yaml"), echoAppOn(t, []string{added}, pid(), ""))
	if err := os.Remove(filepath.Join(apps, "gone.yaml")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, reloadWait, func() bool { return tryEcho(added, "added") && refused(gone) },
		"after adding an app and removing another: the added one is not served, or the removed one still is")
	if !tryEcho(keep, "after") {
		t.Error("the app kept throughout is no longer served")
	}
	if !refused(refusedAddr) {
		t.Error("the refused file's app is served")
	}
	if n := strings.Count(d.out.String(), why); n != 1 {
		t.Errorf("the blocked app's error was logged %d times, want once", n)
	}
	if l := d.out.String(); strings.Contains(l, "cannot put the last good version") {
		t.Errorf("the reload wedged on the blocked app:\n%s", l)
	}
}

// refuse makes path a file the daemon refuses: nobody's when the tests
// run as root; otherwise one asking for user:, which only root can give.
func refuse(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		testutil.ChownNobody(t, path)
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, path, string(b)+"user: nobody\n")
}
