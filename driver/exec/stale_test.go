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

	"github.com/dynapm/dynapm/internal/exectest"
	"github.com/dynapm/dynapm/internal/testutil"
)

func TestExecDriverRecordsEachGroupWhileItLives(t *testing.T) {
	d := newExecTestDriver(t)
	if d.Containment() == ContainCgroup {
		t.Skip("with cgroups, no record is written: see TestStopLeftGroupsStopsWhatADeadDaemonLeft")
	}
	run := filepath.Join(t.TempDir(), "run")
	if err := d.RecordGroups(run); err != nil {
		t.Fatal(err)
	}
	req, _ := execRequest(t, "-mode", "sleep")
	req.Spec.StopSignal, req.Spec.StopTimeout = syscall.SIGINT, 3*time.Second
	p := execStart(t, d, req)
	d.mu.Lock()
	id := d.groups[p.Pid()].box.id
	d.mu.Unlock()
	rec, err := readRecord(recordPath(run, id))
	if err != nil {
		t.Fatalf("no record of group %d in %s: %v", p.Pid(), run, err)
	}
	if rec.App != "t" || rec.Pgid != p.Pid() || rec.StopSignal != int(syscall.SIGINT) ||
		rec.StopTimeout != 3*time.Second || !rec.stillOurs() {
		t.Fatalf("record = %+v (still ours: %v)", rec, rec.stillOurs())
	}
	execStop(t, p, time.Second)
	if _, err := os.Stat(recordPath(run, id)); !os.IsNotExist(err) {
		t.Fatalf("record of a stopped group still there: %v", err)
	}
}

// startOrphanGroup starts a sleeping testapp in its own process group, not
// under any driver (as one left by a dead daemon), with invocation id id
// in its environment unless it is empty, and returns its pid.
func startOrphanGroup(t *testing.T, id string, extra ...string) int {
	t.Helper()
	cmd := exec.Command(testutil.TestApp(t), append([]string{"-mode", "sleep"}, extra...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if id != "" {
		cmd.Env = append(os.Environ(), InvocationEnv+"="+id)
	}
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
	writeTestRecordMode(t, dir, rec, 0o600)
}

func writeTestRecordMode(t *testing.T, dir string, rec groupRecord, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b := []byte(`{"app":"` + rec.App + `","pgid":` + strconv.Itoa(rec.Pgid) + `,"start_ticks":` +
		strconv.FormatUint(rec.StartTicks, 10) + `,"boot_id":"` + rec.BootID + `","invocation":"` + rec.Invocation +
		`","stop_signal":15,"stop_timeout":` + strconv.FormatInt(int64(rec.StopTimeout), 10) + `}`)
	path := recordPath(dir, strconv.Itoa(rec.Pgid))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestStopStaleKillsARecordedGroupThatIgnoresSIGTERM(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	id := newInvocationID()
	pid := startOrphanGroup(t, id, "-ignore-term")
	ticks, err := startTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	writeTestRecord(t, dir, groupRecord{App: "old", Pgid: pid, StartTicks: ticks, BootID: bootID(), Invocation: id, StopTimeout: 200 * time.Millisecond})
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
	dir := filepath.Join(t.TempDir(), "run")
	id := newInvocationID()
	pid := startOrphanGroup(t, newInvocationID()) // a later program's
	ticks, err := startTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The same pid, started at another time, of another invocation: not
	// the recorded program, whose processes are all gone.
	writeTestRecord(t, dir, groupRecord{App: "old", Pgid: pid, StartTicks: ticks + 1, BootID: bootID(), Invocation: id, StopTimeout: time.Second})
	if n := StopStale(context.Background(), dir, slog.New(slog.DiscardHandler)); n != 0 {
		t.Fatalf("StopStale stopped %d groups, want 0", n)
	}
	if !groupAlive(pid) {
		t.Fatalf("group %d with a reused pid was killed", pid)
	}
	// The same from another boot.
	writeTestRecord(t, dir, groupRecord{App: "old", Pgid: pid, StartTicks: ticks, BootID: "another-boot", Invocation: id, StopTimeout: time.Second})
	if n := StopStale(context.Background(), dir, slog.New(slog.DiscardHandler)); n != 0 || !groupAlive(pid) {
		t.Fatalf("StopStale stopped %d groups from another boot (alive: %v)", n, groupAlive(pid))
	}
}

func TestStopStaleWithoutRecords(t *testing.T) {
	if n := StopStale(context.Background(), filepath.Join(t.TempDir(), "missing"), slog.New(slog.DiscardHandler)); n != 0 {
		t.Fatalf("StopStale on a missing dir stopped %d", n)
	}
}

// A record is a file anyone who could write the run directory could
// forge, with the pid, start time and boot id that /proc shows everyone:
// a process that does not carry the record's invocation id is never
// signalled, nor one named by a record another user could have written.
func TestStopStaleNeverSignalsAProcessBecauseAFileSaysSo(t *testing.T) {
	id := newInvocationID()              // known only to the program that carries it
	forged := newInvocationID()          // what a forger can write: any id but id
	unrelated := startOrphanGroup(t, "") // no invocation id at all
	other := startOrphanGroup(t, newInvocationID())
	ours := startOrphanGroup(t, id)
	rec := func(pid int, id string) groupRecord {
		ticks, err := startTicks(pid)
		if err != nil {
			t.Fatal(err)
		}
		return groupRecord{App: "forged", Pgid: pid, StartTicks: ticks, BootID: bootID(), Invocation: id, StopTimeout: time.Second}
	}
	dir := filepath.Join(t.TempDir(), "run")
	writeTestRecord(t, dir, rec(unrelated, forged))   // matches in all but the environment
	writeTestRecord(t, dir, rec(other, forged))       // a process of another invocation
	writeTestRecordMode(t, dir, rec(ours, id), 0o644) // the right one, in a file others can read
	var logs strings.Builder
	if n := StopStale(context.Background(), dir, slog.New(slog.NewTextHandler(&logs, nil))); n != 0 {
		t.Fatalf("StopStale stopped %d groups on forged records; log:\n%s", n, &logs)
	}
	for _, pid := range []int{unrelated, other, ours} {
		if !groupAlive(pid) {
			t.Fatalf("process %d was killed because of a forged record", pid)
		}
	}
	if !strings.Contains(logs.String(), "mode 0600 is trusted") {
		t.Fatalf("the record open to others is not refused by name:\n%s", &logs)
	}
	// A run directory open to others is not read at all.
	open := filepath.Join(t.TempDir(), "run")
	writeTestRecord(t, open, rec(ours, id))
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if n := StopStale(context.Background(), open, slog.New(slog.DiscardHandler)); n != 0 || !groupAlive(ours) {
		t.Fatalf("StopStale acted on a run directory open to others (stopped %d)", n)
	}
}

func TestStopLeftGroupsStopsWhatADeadDaemonLeft(t *testing.T) {
	var logs strings.Builder
	d := New(slog.New(slog.NewTextHandler(&logs, nil)))
	d.leftTimeout = 50 * time.Millisecond
	exectest.Setup(t, d)
	d.mu.Lock()
	sub := d.sub
	d.mu.Unlock()
	if sub == nil {
		t.Skip("no cgroups in this run")
	}
	// As a dead daemon left it: a group in the subtree, a program born in
	// it that ignores SIGTERM, nothing recorded anywhere.
	g, err := sub.Create(groupName("old", 'i', newInvocationID()))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testutil.TestApp(t), "-mode", "sleep", "-ignore-term")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, UseCgroupFD: true, CgroupFD: g.FD()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	g.Close()
	if n := d.StopLeftGroups(context.Background()); n != 1 {
		t.Fatalf("StopLeftGroups stopped %d groups, want 1; log:\n%s", n, &logs)
	}
	<-waited
	if names, err := sub.List(); err != nil || len(names) != 0 {
		t.Fatalf("groups left in the subtree: %v (%v)", names, err)
	}
	if want := `found app \"old\" still running from a previous daemon`; !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, &logs)
	}
}

// A program is recorded before it starts: a daemon killed between the
// fork and the record leaves a record all the same, which names no
// process group yet, and the next daemon stops the program by the
// invocation id its processes carry.
func TestStopStaleStopsAProgramRecordedBeforeItStarted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b := &box{id: newInvocationID()}
	if err := writeRecord(dir, b, "early", "/bin/early", syscall.SIGTERM, time.Second); err != nil {
		t.Fatal(err)
	}
	pid := startOrphanGroup(t, b.id)
	if n := StopStale(context.Background(), dir, slog.New(slog.DiscardHandler)); n != 1 {
		t.Fatalf("StopStale stopped %d programs, want 1", n)
	}
	if groupAlive(pid) {
		t.Fatalf("program %d recorded before it started still runs", pid)
	}
}
