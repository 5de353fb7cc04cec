package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeGroup is a Group over a plain directory holding files written as a
// cgroup with the memory controller has them: the memory files can be
// read where no cgroup2 mount enables the controller (as on the machines
// the suite runs on).
func fakeGroup(t *testing.T, files map[string]string) *Group {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &Group{s: &Subtree{path: filepath.Dir(dir)}, name: filepath.Base(dir), dir: f}
}

func TestMemoryFilesOfAGroupWithTheController(t *testing.T) {
	g := fakeGroup(t, map[string]string{
		"memory.current": "123456\n",
		"memory.max":     "max\n",
		"memory.events":  "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n",
	})
	if n, err := g.MemoryCurrent(); err != nil || n != 123456 {
		t.Errorf("MemoryCurrent = %d, %v; want 123456", n, err)
	}
	if n, err := g.OOMKills(); err != nil || n != 1 {
		t.Errorf("OOMKills = %d, %v; want 1 (oom_kill, not oom or max)", n, err)
	}
	for limit, want := range map[uint64]string{64 << 20: "67108864", 0: "max"} {
		// A plain file keeps what a longer write left; the kernel's does not.
		if err := os.WriteFile(filepath.Join(g.Path(), "memory.max"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := g.SetMemoryMax(limit); err != nil {
			t.Fatal(err)
		}
		if data, err := os.ReadFile(filepath.Join(g.Path(), "memory.max")); err != nil || string(data) != want {
			t.Errorf("SetMemoryMax(%d) wrote %q, %v; want %q", limit, data, err, want)
		}
	}
}

func TestMemoryFilesMissingMeanNoController(t *testing.T) {
	g := fakeGroup(t, map[string]string{"memory.current": "not a number\n"})
	if _, err := g.MemoryCurrent(); err == nil || errors.Is(err, ErrNoMemory) {
		t.Errorf("MemoryCurrent of a garbled file = %v, want a parse error", err)
	}
	if _, err := g.OOMKills(); !errors.Is(err, ErrNoMemory) {
		t.Errorf("OOMKills without memory.events = %v, want ErrNoMemory", err)
	}
}
