package metrics

import (
	"slices"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/admin"
)

// Every reason the lifecycle manager gives, and one it might give one day,
// lands on a label of the fixed set.
func TestReasonLabels(t *testing.T) {
	starts := map[string]string{
		"connection": "connection", "cron": "cron", "manual": "manual", "boot": "boot",
		"reload": "reload", "crash": "crash", "adopt": "adopt", "needed": "needed", "scale": "scale", "min": "scale",
		"memory: over memory_max": "memory", "stopped from outside": "outside", "new-thing": "other",
	}
	stops := map[string]string{
		"idle": "idle", "manual": "manual", "restart": "manual", "disabled": "manual", "crash": "crash", "reload": "reload",
		"removed": "removed", "outside": "outside", "stopped from outside": "outside",
		"failed": "failed", "start timeout": "failed", "shutdown": "shutdown", "exclusive": "exclusive", "scale down": "scale",
		"memory: over budget": "memory", "memory: below min_available": "memory",
		"memory: making room": "memory", "memory: over memory_max": "memory", "new-thing": "other",
	}
	for reason, want := range starts {
		if got := startLabel(reason); got != want || !slices.Contains(startReasons, got) {
			t.Errorf("start %q: label %q, want %q", reason, got, want)
		}
	}
	for reason, want := range stops {
		if got := stopLabel(reason); got != want || !slices.Contains(stopReasons, got) {
			t.Errorf("stop %q: label %q, want %q", reason, got, want)
		}
	}
}

func TestScrapeCountsDetailedReasonsUnderTheirLabel(t *testing.T) {
	m := New(func() []admin.App { return nil })
	s := serve(t, m)
	m.AppStopped("web", "memory: over budget")
	m.AppStopped("web", "memory: making room")
	m.AppStopped("web", "restart")
	m.AppStarted("web", "manual")
	out := scrape(t, s.Addr())
	requireLines(t, out,
		`dynapm_app_stops_total{app="web",reason="memory"} 2`,
		`dynapm_app_stops_total{app="web",reason="manual"} 1`,
		`dynapm_app_starts_total{app="web",reason="manual"} 1`,
		"# HELP dynapm_app_stops_total Program stops and exits, by reason: "+strings.Join(stopReasons, ", ")+".",
		"# HELP dynapm_app_starts_total Program starts, by reason: "+strings.Join(startReasons, ", ")+".",
	)
	if strings.Contains(out, `reason="memory: `) || strings.Contains(out, `reason="restart"`) {
		t.Errorf("a detailed reason became a label:\n%s", out)
	}
}
