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

// A frozen app holds memory for nothing: it goes before a running app,
// even one idle for longer.
func TestMemoryBudgetStopsAFrozenAppBeforeARunningOne(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, "memory:\n  budget: 180MiB\n  interval: 100ms\n")
	pids, listens := map[string]string{}, map[string]string{}
	for _, name := range []string{"old", "ice", "new"} {
		pids[name] = filepath.Join(t.TempDir(), "pid")
		listens[name] = testutil.FreeAddr(t)
		file := strings.Replace(testutil.EchoApp(t, listens[name], pids[name], ", \"-alloc\", \"64\""),
			"idle_timeout: 300ms", "idle_timeout: 10m", 1)
		if name == "ice" {
			file = testutil.EchoApp(t, listens[name], pids[name], ", \"-alloc\", \"64\"") + "idle_action: freeze\n"
		}
		testutil.WriteFile(t, filepath.Join(apps, name+".yaml"), file)
	}
	d := startDaemon(t, apps, "-config", config, "-state", state)
	// old is the least recently active, yet running; ice freezes.
	for _, name := range []string{"old", "ice"} {
		if got := testutil.EchoOnce(t, listens[name], name); got != name {
			t.Fatalf("app %s echoed %q", name, got)
		}
	}
	old, ice := testutil.ReadPidFile(t, pids["old"]), testutil.ReadPidFile(t, pids["ice"])
	testutil.Eventually(t, 10*time.Second, func() bool { return statusOf(t, state, "ice")["state"] == "frozen" },
		"ice not frozen")
	testutil.EchoOnce(t, listens["new"], "new") // three 64 MiB apps: over 180 MiB
	testutil.Eventually(t, 20*time.Second, func() bool { return !testutil.ProcessAlive(ice) },
		"frozen app ice (pid %d) still there over budget", ice)
	if !testutil.ProcessAlive(old) {
		t.Fatal("the running app old was stopped too; stopping the frozen one was enough")
	}
	d.waitLog(t, "stopped app for memory", "app=ice")
}
