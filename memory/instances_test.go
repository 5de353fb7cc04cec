package memory

import (
	"context"
	"log/slog"
	"testing"
)

// An app running several instances reports every pid; its RSS is the sum of
// their trees, and that sum decides (here: LastRSS, as status shows it).
func TestSeveralInstancesCountTheSumOfTheirTrees(t *testing.T) {
	apps := newTestApps(t)
	first := apps.start("a", 48, AppUsage{})
	second := startHelper(t, 48, false)
	rss2, err := TreeRSS(second.pid())
	if err != nil {
		t.Fatal(err)
	}
	apps.mu.Lock()
	u := &apps.apps["a"].usage
	u.Pids = []int{u.Pid, second.pid()}
	apps.mu.Unlock()

	m := NewMonitor(MonitorConfig{Reader: plenty{}, Apps: apps, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	m.Check(context.Background())
	want := first + rss2
	if got := m.LastRSS("a"); got < want*9/10 || got > want*11/10 {
		t.Fatalf("LastRSS = %d, want about %d (%d + %d)", got, want, first, rss2)
	}
	// Back to one instance: one tree again.
	apps.mu.Lock()
	u.Pids = nil
	apps.mu.Unlock()
	second.kill()
	m.Check(context.Background())
	if got := m.LastRSS("a"); got < first*9/10 || got > first*11/10 {
		t.Fatalf("LastRSS after scaling down = %d, want about %d", got, first)
	}
}
