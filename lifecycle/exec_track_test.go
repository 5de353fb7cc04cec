package lifecycle

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestTrackedGroupIsRecordedUntilUntracked(t *testing.T) {
	d := newExecTestDriver(t)
	run := filepath.Join(t.TempDir(), "run")
	if err := d.RecordGroups(run); err != nil {
		t.Fatal(err)
	}
	pgid := startOrphanGroup(t)
	untrack := d.TrackGroup(pgid, "nightly", "/bin/backup")
	rec, ok := readRecord(recordPath(run, pgid))
	if !ok {
		t.Fatalf("no record of tracked group %d in %s", pgid, run)
	}
	if rec.App != "nightly" || rec.Program != "/bin/backup" || rec.Pgid != pgid ||
		rec.StopTimeout != trackedStopTimeout || !rec.stillOurs() {
		t.Fatalf("record = %+v (still ours: %v)", rec, rec.stillOurs())
	}
	untrack()
	if _, err := os.Stat(recordPath(run, pgid)); !os.IsNotExist(err) {
		t.Fatalf("record of an untracked group still there: %v", err)
	}
	untrack() // a second call changes nothing
}

func TestReaperKillsTrackedGroupsButNotUntrackedOnes(t *testing.T) {
	d := newExecTestDriver(t)
	kept, dropped := startOrphanGroup(t), startOrphanGroup(t)
	d.TrackGroup(kept, "a", "sleep")
	d.TrackGroup(dropped, "b", "sleep")()
	// No app was ever started: TrackGroup must have started the reaper.
	d.mu.Lock()
	r := d.reaper
	d.mu.Unlock()
	if r == nil {
		t.Fatal("TrackGroup did not start the reaper")
	}
	// EOF on the reaper's stdin, as when the daemon dies.
	r.w.Close()
	testutil.Eventually(t, execWaitLimit, func() bool { return !testutil.ProcessAlive(kept) },
		"tracked group %d survived the reaper", kept)
	if !testutil.ProcessAlive(dropped) {
		t.Fatalf("untracked group %d was killed", dropped)
	}
}
