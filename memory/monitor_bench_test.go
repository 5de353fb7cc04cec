package memory

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"testing"
	"time"
)

// scaleApps reports many configured apps of which a few run; it never
// needs to stop one (the benchmark's policy has no limits that bite).
type scaleApps struct{ usage []AppUsage }

func (s *scaleApps) MemoryUsage() []AppUsage { return s.usage }

func (s *scaleApps) StopForMemory(context.Context, string, string) error {
	return fmt.Errorf("stopping: not expected in the benchmark")
}

func (s *scaleApps) RestartForMemory(context.Context, string, string) error {
	return fmt.Errorf("restarting: not expected in the benchmark")
}

// newScaleApps returns 1,000 configured apps of which every 20th runs (a
// real sleep process). The lifecycle manager lists only the apps that have
// run since the daemon started; with listStopped all 1,000 are listed, as
// once every app has run at least once (the worst case), else only the 50
// running ones (a daemon whose other apps have not run yet).
func newScaleApps(b *testing.B, listStopped bool) *scaleApps {
	apps := &scaleApps{}
	for i := range 1000 {
		u := AppUsage{Name: fmt.Sprintf("app%04d", i), LastActive: time.Now()}
		if i%20 == 0 {
			cmd := exec.Command("sleep", "600")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			u.Pid = cmd.Process.Pid
		} else if !listStopped {
			continue
		}
		apps.usage = append(apps.usage, u)
	}
	return apps
}

// BenchmarkMakeRoom1000Apps50Running measures what a cold start pays before
// its spawn when a budget is set and the app's size is known (nothing needs
// stopping).
func BenchmarkMakeRoom1000Apps50Running(b *testing.B) {
	apps := newScaleApps(b, true)
	m := NewMonitor(MonitorConfig{
		Policy: Policy{MinAvailableBytes: 1, Budget: 1 << 50},
		Apps:   apps,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx := context.Background()
	m.Check(ctx) // measures app0000
	apps.usage[0].Pid = 0
	m.Check(ctx) // sees app0000 stopped: its peak is its expected size
	if m.PeakRSS("app0000") <= 0 {
		b.Fatal("no peak for app0000")
	}
	b.ResetTimer()
	for b.Loop() {
		m.MakeRoom(ctx, "app0000")
	}
}

// BenchmarkCheck1000Apps50Running measures one memory check with 1,000
// apps configured and 50 running (real processes), reading the real
// /proc/meminfo: the cost paid every Interval. All 1,000 are listed, as
// once every app has run since the daemon started: the worst case.
func BenchmarkCheck1000Apps50Running(b *testing.B) {
	benchmarkCheck(b, newScaleApps(b, true))
}

// BenchmarkCheck50RanOf1000Apps is the same check when only the 50 running
// apps have run since the daemon started: the manager lists no other.
func BenchmarkCheck50RanOf1000Apps(b *testing.B) {
	benchmarkCheck(b, newScaleApps(b, false))
}

func benchmarkCheck(b *testing.B, apps *scaleApps) {
	m := NewMonitor(MonitorConfig{
		Policy: Policy{MinAvailableBytes: 1, Budget: 1 << 50},
		Apps:   apps,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if stops := m.Check(ctx); len(stops) != 0 {
			b.Fatalf("stopped %+v", stops)
		}
	}
}
