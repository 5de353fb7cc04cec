package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProgramIsBornInsideItsGroup(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("web@1")
	if err != nil {
		t.Fatal(err)
	}
	// The program's first act reports its own cgroup, with builtins only:
	// a child would show in Procs.
	p := startIn(t, g, `while read -r l; do case $l in 0::*) echo "$l";; esac; done </proc/$$/cgroup; exec sleep 1000`)
	want := "0::" + path.Join(s.cgPath, "web@1")
	if got := p.line(t); got != want {
		t.Fatalf("the program started in %q, want %q", got, want)
	}
	pid := p.cmd.Process.Pid
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), want+"\n") {
		t.Fatalf("/proc/%d/cgroup = %q, want the line %q", pid, data, want)
	}
	if pids, err := g.Procs(); err != nil || !slices.Equal(pids, []int{pid}) {
		t.Fatalf("Procs = %v, %v; want [%d]", pids, err, pid)
	}
	if pop, err := g.Populated(); err != nil || !pop {
		t.Fatalf("Populated = %v, %v; want true", pop, err)
	}
}

// setsidScript forks a grandchild into a session of its own, which prints
// its pid, then the program waits.
const setsidScript = `setsid sh -c 'echo $$; exec sleep 1000' & exec sleep 1000`

// startEscaper starts setsidScript in g and returns the program and a
// pidfd of the grandchild, once both are in the group.
func startEscaper(t *testing.T, g *Group) (*proc, int) {
	t.Helper()
	p := startIn(t, g, setsidScript)
	gpid := p.pidLine(t)
	if sid := session(t, gpid); sid != gpid {
		t.Fatalf("grandchild %d is in session %d, want a session of its own", gpid, sid)
	}
	pids, err := g.Procs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, gpid) || !slices.Contains(pids, p.cmd.Process.Pid) {
		t.Fatalf("Procs = %v, want the program %d and the grandchild %d", pids, p.cmd.Process.Pid, gpid)
	}
	return p, pidfd(t, gpid)
}

// checkEmptied checks that the group emptied: the wait returns, no
// member is left, and the grandchild is gone.
func checkEmptied(t *testing.T, g *Group, grandchild int) {
	t.Helper()
	if err := g.WaitEmpty(waitCtx(t)); err != nil {
		t.Fatalf("WaitEmpty: %v", err)
	}
	if pids, err := g.Procs(); err != nil || len(pids) != 0 {
		t.Fatalf("Procs = %v, %v after the group emptied", pids, err)
	}
	if pop, err := g.Populated(); err != nil || pop {
		t.Fatalf("Populated = %v, %v after the group emptied", pop, err)
	}
	if !exited(t, grandchild) {
		t.Fatal("the setsid grandchild is still running")
	}
}

func TestKillEmptiesTheGroupSetsidGrandchildIncluded(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("escaper")
	if err != nil {
		t.Fatal(err)
	}
	p, gc := startEscaper(t, g)
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	checkEmptied(t, g, gc)
	p.killedBySignal(t, syscall.SIGKILL)
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the group's directory is still there after Remove: %v", err)
	}
}

// TestKillEachEmptiesTheGroup runs the kill used where cgroup.kill is
// missing (kernels before 5.14).
func TestKillEachEmptiesTheGroup(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("old-kernel")
	if err != nil {
		t.Fatal(err)
	}
	p, gc := startEscaper(t, g)
	if err := g.killEach(); err != nil {
		t.Fatal(err)
	}
	checkEmptied(t, g, gc)
	p.killedBySignal(t, syscall.SIGKILL)
}

func TestSignalReachesEveryMember(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("term")
	if err != nil {
		t.Fatal(err)
	}
	p, gc := startEscaper(t, g)
	if err := g.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	checkEmptied(t, g, gc)
	p.killedBySignal(t, syscall.SIGTERM)
}

func TestWaitEmptyReturnsWhenTheProgramExits(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("short")
	if err != nil {
		t.Fatal(err)
	}
	p := startIn(t, g, `read -r x; echo "$x"`)
	ctx := waitCtx(t)
	done := make(chan error, 1)
	go func() { done <- g.WaitEmpty(ctx) }()
	if _, err := p.in.Write([]byte("bye\n")); err != nil {
		t.Fatal(err)
	}
	if got := p.line(t); got != "bye" {
		t.Fatalf("the program said %q, want bye", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitEmpty: %v", err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestWaitEmptyEndsWithItsContext(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("long")
	if err != nil {
		t.Fatal(err)
	}
	startIn(t, g, `exec sleep 1000`)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.WaitEmpty(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitEmpty on a populated group = %v, want the context's deadline", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := g.WaitEmpty(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitEmpty with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestFreezeStopsTheGroupAndThawResumesIt(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("echo")
	if err != nil {
		t.Fatal(err)
	}
	p := startIn(t, g, `while read -r l; do echo "$l"; done`)
	say := func(s string) {
		t.Helper()
		if _, err := p.in.Write([]byte(s + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	say("a")
	if got := p.line(t); got != "a" {
		t.Fatalf("got %q, want a", got)
	}
	if err := g.Freeze(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	events, err := os.ReadFile(filepath.Join(g.Path(), "cgroup.events"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(events), "frozen 1\n") {
		t.Fatalf("cgroup.events after Freeze = %q, want frozen 1", events)
	}
	say("b")
	p.raw.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if l, err := p.out.ReadString('\n'); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a frozen program answered %q (%v)", l, err)
	}
	if err := g.Thaw(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := p.line(t); got != "b" {
		t.Fatalf("after Thaw got %q, want b", got)
	}
}

func TestListFindsAGroupADeadDaemonLeft(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("web@2")
	if err != nil {
		t.Fatal(err)
	}
	p := startIn(t, g, `exec sleep 1000`)
	g.Close()
	// Not a group name: no daemon made it, List leaves it alone.
	junk := filepath.Join(s.Path(), "not.a.group")
	if err := os.Mkdir(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(junk) })

	next, err := Open(Config{Name: testName(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	names, err := next.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"web@2"}) {
		t.Fatalf("List = %q, want [web@2]", names)
	}
	left, err := next.Open("web@2")
	if err != nil {
		t.Fatal(err)
	}
	if pids, err := left.Procs(); err != nil || !slices.Equal(pids, []int{p.cmd.Process.Pid}) {
		t.Fatalf("Procs = %v, %v; want the left program %d", pids, err, p.cmd.Process.Pid)
	}
	if err := left.Destroy(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	p.killedBySignal(t, syscall.SIGKILL)
	if names, err := next.List(); err != nil || len(names) != 0 {
		t.Fatalf("List after Destroy = %q, %v; want none", names, err)
	}
}

func TestCreateRefusesAnExistingGroup(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("once")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := s.Create("once"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create = %v, want fs.ErrExist", err)
	}
}

func TestRemoveRefusesAPopulatedGroupAndRemovesSubgroups(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("nest")
	if err != nil {
		t.Fatal(err)
	}
	p := startIn(t, g, `exec sleep 1000`)
	if err := g.Remove(); err == nil {
		t.Fatal("Remove of a populated group succeeded")
	}
	if pids, err := g.Procs(); err != nil || len(pids) != 1 {
		t.Fatalf("after a failed Remove, Procs = %v, %v; want the program", pids, err)
	}
	// Groups an app made below its own.
	if err := os.MkdirAll(filepath.Join(g.Path(), "sub", "subsub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := g.Destroy(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	p.killedBySignal(t, syscall.SIGKILL)
	if _, err := os.Stat(g.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the group is still there after Destroy: %v", err)
	}
}

func TestMemory(t *testing.T) {
	s := openTest(t)
	g, err := s.Create("mem")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := s.Memory(); err != nil {
		if !errors.Is(err, ErrNoMemory) {
			t.Fatalf("Memory() = %v, want ErrNoMemory", err)
		}
		t.Logf("memory controller unavailable: %v", err)
		if _, err := g.MemoryCurrent(); !errors.Is(err, ErrNoMemory) {
			t.Errorf("MemoryCurrent = %v, want ErrNoMemory", err)
		}
		if err := g.SetMemoryMax(64 << 20); !errors.Is(err, ErrNoMemory) {
			t.Errorf("SetMemoryMax = %v, want ErrNoMemory", err)
		}
		if _, err := g.OOMKills(); !errors.Is(err, ErrNoMemory) {
			t.Errorf("OOMKills = %v, want ErrNoMemory", err)
		}
		return
	}
	startIn(t, g, `exec sleep 1000`)
	if err := g.SetMemoryMax(64 << 20); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(g.Path(), "memory.max")); err != nil || string(data) != "67108864\n" {
		t.Fatalf("memory.max = %q, %v; want 67108864", data, err)
	}
	if n, err := g.MemoryCurrent(); err != nil || n == 0 {
		t.Fatalf("MemoryCurrent = %d, %v; want the program's use", n, err)
	}
	if n, err := g.OOMKills(); err != nil || n != 0 {
		t.Fatalf("OOMKills = %d, %v; want 0", n, err)
	}
	if err := g.SetMemoryMax(0); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(g.Path(), "memory.max")); err != nil || string(data) != "max\n" {
		t.Fatalf("memory.max = %q, %v; want max", data, err)
	}
}

func TestKeyedValue(t *testing.T) {
	events := []byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n")
	if n, err := keyedValue(events, "oom_kill"); err != nil || n != 2 {
		t.Fatalf("oom_kill = %d, %v; want 2", n, err)
	}
	if _, err := keyedValue(events, "populated"); err == nil || !strings.Contains(err.Error(), "no populated line") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := keyedValue([]byte("populated x\n"), "populated"); err == nil || !strings.Contains(err.Error(), `"x" is not a number`) {
		t.Fatalf("bad value: %v", err)
	}
}
