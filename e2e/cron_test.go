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

func TestCronWakeStartsAppWithoutAConnection(t *testing.T) {
	apps := t.TempDir()
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "warm.yaml"),
		testutil.EchoApp(t, testutil.FreeAddr(t), pidfile, "")+"wake:\n  - cron: \"@every 1s\"\n    keep: 1m\n")
	startDaemon(t, apps)
	if pid := testutil.ReadPidFile(t, pidfile); !testutil.ProcessAlive(pid) {
		t.Fatalf("app woken by cron is not running (pid %d)", pid)
	}
}

func TestCronJobRunsInTheAppDirWithItsEnv(t *testing.T) {
	apps := t.TempDir()
	dir := t.TempDir()
	testutil.WriteFile(t, filepath.Join(apps, "tidy.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [\"true\"]\ndir: %q\nenv: {WHO: cron}\njobs:\n  - cron: \"@every 1s\"\n    command: \"echo $WHO > ran\"\n",
		testutil.FreeAddr(t), dir))
	startDaemon(t, apps)
	testutil.Eventually(t, 15*time.Second, func() bool {
		data, err := os.ReadFile(filepath.Join(dir, "ran"))
		return err == nil && string(data) == "cron\n"
	}, "the cron job did not run in the app's dir with its env")
}

func TestCronJobDiesWithASIGKILLedDaemon(t *testing.T) {
	apps := t.TempDir()
	pidfile := filepath.Join(t.TempDir(), "job.pid")
	testutil.WriteFile(t, filepath.Join(apps, "batch.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [\"true\"]\njobs:\n  - cron: \"@every 1s\"\n    command: [%q, \"-mode\", \"sleep\", \"-pidfile\", %q]\n",
		testutil.FreeAddr(t), testutil.TestApp(t), pidfile))
	d := startDaemon(t, apps)
	pid := testutil.ReadPidFile(t, pidfile)
	if !testutil.ProcessAlive(pid) {
		t.Fatalf("job process %d not running", pid)
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
	testutil.Eventually(t, 10*time.Second, func() bool { return !testutil.ProcessAlive(pid) },
		"job process %d outlived a SIGKILLed daemon", pid)
}

// A job that needs its app starts it as a scheduled start: the log and
// the metrics say cron, not connection.
func TestCronJobThatNeedsItsAppStartsItForCron(t *testing.T) {
	apps, metricsAddr := t.TempDir(), testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "report.yaml"), testutil.EchoApp(t, testutil.FreeAddr(t), filepath.Join(t.TempDir(), "pid"), "")+
		"jobs:\n  - cron: \"@every 1s\"\n    needs_app: true\n    command: \"true\"\n")
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\n", metricsAddr))
	d := startDaemon(t, apps, "-config", config)
	d.waitLog(t, `msg="app started"`, "app=report", "reason=cron")
	var out string
	testutil.Eventually(t, 20*time.Second, func() bool {
		out = scrapeMetrics(t, metricsAddr)
		return strings.Contains(out, `dynapm_app_starts_total{app="report",reason="cron"} 1`+"\n")
	}, "metrics lack a cron start of report:\n%s", &out)
	if strings.Contains(d.out.String(), "reason=connection") || strings.Contains(out, `reason="connection"`) {
		t.Errorf("a start for a job counted as a connection's; log:\n%s\nmetrics:\n%s", d.out, out)
	}
}
