package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestMemoryBudgetStopsTheLeastRecentlyActiveApp(t *testing.T) {
	apps := t.TempDir()
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, "memory:\n  budget: 180MiB\n  interval: 100ms\n")
	pids := map[string]string{}
	listens := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		pids[name] = filepath.Join(t.TempDir(), "pid")
		listens[name] = testutil.FreeAddr(t)
		testutil.WriteFile(t, filepath.Join(apps, name+".yaml"),
			strings.Replace(testutil.EchoApp(t, listens[name], pids[name], ", \"-alloc\", \"64\""),
				"idle_timeout: 300ms", "idle_timeout: 10m", 1))
	}
	d := startDaemon(t, apps, "-config", config)
	for _, name := range []string{"a", "b"} {
		if got := testutil.EchoOnce(t, listens[name], name); got != name {
			t.Fatalf("app %s echoed %q", name, got)
		}
	}
	a := testutil.ReadPidFile(t, pids["a"])
	b := testutil.ReadPidFile(t, pids["b"])
	testutil.EchoOnce(t, listens["c"], "c") // now three 64 MiB apps: over 180 MiB
	testutil.Eventually(t, 20*time.Second, func() bool { return !testutil.ProcessAlive(a) },
		"least recently active app a (pid %d) still running over budget", a)
	if !testutil.ProcessAlive(b) {
		t.Fatalf("app b was stopped too; one stop was enough")
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		out := d.out.String()
		return strings.Contains(out, "app=a") && strings.Contains(out, "stopped app for memory")
	}, "memory stop of a not logged with its reason")
	if _, err := os.Stat(pids["c"]); err != nil {
		t.Fatal(fmt.Errorf("app c never started: %w", err))
	}
}
