package execdriver

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestExecDriverRecordsEachGroupWhileItLives(t *testing.T) {
	d := newExecTestDriver(t)
	run := filepath.Join(t.TempDir(), "run")
	if err := d.RecordGroups(run); err != nil {
		t.Fatal(err)
	}
	req, _ := execRequest(t, "-mode", "sleep")
	req.Spec.StopSignal, req.Spec.StopTimeout = syscall.SIGINT, 3*time.Second
	p := execStart(t, d, req)
	rec, ok := readRecord(recordPath(run, p.Pid()))
	if !ok {
		t.Fatalf("no record of group %d in %s", p.Pid(), run)
	}
	if rec.App != "t" || rec.Pgid != p.Pid() || rec.StopSignal != int(syscall.SIGINT) ||
		rec.StopTimeout != 3*time.Second || !rec.stillOurs() {
		t.Fatalf("record = %+v (still ours: %v)", rec, rec.stillOurs())
	}
	execStop(t, p, time.Second)
	if _, err := os.Stat(recordPath(run, p.Pid())); !os.IsNotExist(err) {
		t.Fatalf("record of a stopped group still there: %v", err)
	}
}

// startOrphanGroup starts a sleeping testapp in its own process group, not
// under any driver (as one left by a dead daemon), and returns its pid.
func startOrphanGroup(t *testing.T, extra ...string) int {
	t.Helper()
	cmd := exec.Command(testutil.TestApp(t), append([]string{"-mode", "sleep"}, extra...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd.Process.Pid
}

func writeTestRecord(t *testing.T, dir string, rec groupRecord) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b := []byte(`{"app":"` + rec.App + `","pgid":` + strconv.Itoa(rec.Pgid) + `,"start_ticks":` +
		strconv.FormatUint(rec.StartTicks, 10) + `,"boot_id":"` + rec.BootID + `","stop_signal":15,"stop_timeout":` +
		strconv.FormatInt(int64(rec.StopTimeout), 10) + `}`)
	if err := os.WriteFile(recordPath(dir, rec.Pgid), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStopStaleKillsARecordedGroupThatIgnoresSIGTERM(t *testing.T) {
	dir := t.TempDir()
	pid := startOrphanGroup(t, "-ignore-term")
	ticks, err := startTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	writeTestRecord(t, dir, groupRecord{App: "old", Pgid: pid, StartTicks: ticks, BootID: bootID(), StopTimeout: 200 * time.Millisecond})
	var logs strings.Builder
	n := StopStale(context.Background(), dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if n != 1 {
		t.Fatalf("StopStale stopped %d groups, want 1; log:\n%s", n, &logs)
	}
	if groupAlive(pid) {
		t.Fatalf("recorded group %d still alive", pid)
	}
	if want := `found app \"old\" still running from a previous daemon (pgid ` + strconv.Itoa(pid) + `)`; !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, &logs)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("records left: %v", entries)
	}
}

func TestStopStaleSparesAReusedPid(t *testing.T) {
	dir := t.TempDir()
	pid := startOrphanGroup(t)
	ticks, err := startTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The same pid, started at another time: not the recorded program.
	writeTestRecord(t, dir, groupRecord{App: "old", Pgid: pid, StartTicks: ticks + 1, BootID: bootID(), StopTimeout: time.Second})
	if n := StopStale(context.Background(), dir, slog.New(slog.DiscardHandler)); n != 0 {
		t.Fatalf("StopStale stopped %d groups, want 0", n)
	}
	if !groupAlive(pid) {
		t.Fatalf("group %d with a reused pid was killed", pid)
	}
	// The same from another boot.
	writeTestRecord(t, dir, groupRecord{App: "old", Pgid: pid, StartTicks: ticks, BootID: "another-boot", StopTimeout: time.Second})
	if n := StopStale(context.Background(), dir, slog.New(slog.DiscardHandler)); n != 0 || !groupAlive(pid) {
		t.Fatalf("StopStale stopped %d groups from another boot (alive: %v)", n, groupAlive(pid))
	}
}

func TestStopStaleWithoutRecords(t *testing.T) {
	if n := StopStale(context.Background(), filepath.Join(t.TempDir(), "missing"), slog.New(slog.DiscardHandler)); n != 0 {
		t.Fatalf("StopStale on a missing dir stopped %d", n)
	}
}
