package appsdir

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestOverflowRescansAndPicksUpChangesWhoseEventsWereLost(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), app(9001, "idle_timeout: 1m\n"))
	write(t, filepath.Join(dir, "gone.yaml"), app(9002, ""))
	r := &recorder{}
	w, err := New(Config{Dir: dir, Apply: r.apply, Logger: slog.New(slog.NewTextHandler(r, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// From here on every event is lost, as when the kernel's queue
	// overflows; only the overflow itself is reported.
	errs := make(chan error, 1)
	w.events, w.errs = make(chan fsnotify.Event), errs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	write(t, filepath.Join(dir, "a.yaml"), app(9001, "idle_timeout: 2m\n"))
	write(t, filepath.Join(dir, "b.yaml"), app(9003, ""))
	if err := os.Remove(filepath.Join(dir, "gone.yaml")); err != nil {
		t.Fatal(err)
	}
	errs <- fsnotify.ErrEventOverflow

	testutil.Eventually(t, 10*time.Second, func() bool {
		return idle(r.last("a")) == 2*time.Minute && r.last("b") != nil && r.last("gone") == nil
	}, "the rescan after an overflow did not pick up the edit, the new file and the removal; snapshot %v", w.Snapshot())
	if n := r.count(); n != 2 {
		t.Errorf("%d snapshots applied, want 2: the first scan and one rescan", n)
	}
	if l := r.log(); !strings.Contains(l, "overflowed") {
		t.Errorf("the overflow was not logged:\n%s", l)
	}
}
