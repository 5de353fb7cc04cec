package execdriver

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

// spareOf returns the path of the cgroup made ahead for app's next start,
// "" when there is none (or it is still being made).
func spareOf(d *Driver, app string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b := d.spares[app]; b != nil && b.group != nil {
		return b.group.Path()
	}
	return ""
}

// spareHeld reports whether app has a place among the spares, its cgroup
// made or not.
func spareHeld(d *Driver, app string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.spares[app] != nil
}

// cgroupOf returns the cgroup v2 path of process pid, as /proc says.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	t.Fatalf("no cgroup v2 line for %d:\n%s", pid, b)
	return ""
}

// TestExecNextStartIsBornInTheCgroupMadeAhead: once an app's program is
// gone, the cgroup of its next start is made ahead; that start is born in
// it, and Close removes one left unused.
func TestExecNextStartIsBornInTheCgroupMadeAhead(t *testing.T) {
	d := newExecTestDriver(t)
	d.mu.Lock()
	sub := d.sub
	d.mu.Unlock()
	if sub == nil {
		t.Skip("no cgroups in this run")
	}
	req, _ := execRequest(t, "-mode", "sleep")
	first := execStart(t, d, req)
	if spare := spareOf(d, "t"); spare != "" {
		t.Fatalf("a cgroup %s made ahead while the app runs", spare)
	}
	execStop(t, first, execWaitLimit)
	var spare string
	testutil.Eventually(t, execWaitLimit, func() bool { spare = spareOf(d, "t"); return spare != "" },
		"no cgroup made ahead once the program is gone")

	second := execStart(t, d, req)
	if got := spareOf(d, "t"); got != "" {
		t.Fatalf("the start left the cgroup made ahead unused: %s", got)
	}
	if got := cgroupOf(t, second.Pid()); filepath.Base(got) != filepath.Base(spare) {
		t.Fatalf("second program in cgroup %s, want the one made ahead, %s", got, spare)
	}
	execStop(t, second, execWaitLimit)
	testutil.Eventually(t, execWaitLimit, func() bool { spare = spareOf(d, "t"); return spare != "" },
		"no cgroup made ahead after the second program")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spare); !os.IsNotExist(err) {
		t.Fatalf("cgroup made ahead %s still there after Close (%v)", spare, err)
	}
}

// spareDriver is a test driver whose programs run in cgroups, or a skip.
func spareDriver(t *testing.T) *Driver {
	t.Helper()
	d := newExecTestDriver(t)
	d.mu.Lock()
	sub := d.sub
	d.mu.Unlock()
	if sub == nil {
		t.Skip("no cgroups in this run")
	}
	return d
}

// TestExecForgottenAppLeavesNoCgroupMadeAhead: the cgroup made ahead for
// an app's next start is removed once the app is forgotten, and none is
// made for it when forgotten as its program ends.
func TestExecForgottenAppLeavesNoCgroupMadeAhead(t *testing.T) {
	d := spareDriver(t)
	req, _ := execRequest(t, "-mode", "sleep")
	execStop(t, execStart(t, d, req), execWaitLimit)
	var spare string
	testutil.Eventually(t, execWaitLimit, func() bool { spare = spareOf(d, "t"); return spare != "" },
		"no cgroup made ahead once the program is gone")
	d.ForgetApp("t")
	if got := spareOf(d, "t"); got != "" {
		t.Fatalf("a cgroup made ahead for a forgotten app: %s", got)
	}
	if _, err := os.Stat(spare); !os.IsNotExist(err) {
		t.Fatalf("cgroup made ahead %s still there once the app is forgotten (%v)", spare, err)
	}

	// Forgotten as soon as its Process says it is gone, as the Manager
	// does: the spare's place is held by then, and dropped.
	execStop(t, execStart(t, d, req), execWaitLimit)
	if !spareHeld(d, "t") {
		t.Fatal("no cgroup made ahead, or being made, once the Process is done")
	}
	d.ForgetApp("t")
	if spareHeld(d, "t") {
		t.Fatal("a cgroup made ahead for an app forgotten as its program ended")
	}
	testutil.Eventually(t, execWaitLimit, func() bool { return len(groupsNamed(t, d, "t")) == 0 },
		"cgroups of the forgotten app left")
}

// groupsNamed lists the cgroups of d's subtree that are app's.
func groupsNamed(t *testing.T, d *Driver, app string) []string {
	t.Helper()
	d.mu.Lock()
	sub := d.sub
	d.mu.Unlock()
	names, err := sub.List()
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, n := range names {
		if appOfGroup(n) == app {
			mine = append(mine, n)
		}
	}
	return mine
}

// TestExecCgroupsMadeAheadAreBounded: at most maxSpares cgroups are made
// ahead; a new one takes the place of the oldest, whose cgroup goes.
func TestExecCgroupsMadeAheadAreBounded(t *testing.T) {
	d := spareDriver(t)
	const extra = 3
	var first []string
	for i := range maxSpares + extra {
		app := "app" + strconv.Itoa(i)
		b, evicted := d.reserveSpare(app)
		if b == nil {
			t.Fatalf("no cgroup made ahead for %s, the newest", app)
		}
		d.makeSpare(app, b, evicted)
		if i < extra {
			first = append(first, spareOf(d, app))
		}
	}
	d.mu.Lock()
	n := len(d.spares)
	d.mu.Unlock()
	if n != maxSpares {
		t.Fatalf("%d cgroups made ahead, want %d", n, maxSpares)
	}
	for i := range maxSpares + extra {
		app := "app" + strconv.Itoa(i)
		if got := spareOf(d, app) != ""; got != (i >= extra) {
			t.Errorf("%s has a cgroup made ahead: %v, want %v (oldest first out)", app, got, i >= extra)
		}
	}
	for _, p := range first {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("evicted cgroup %s still there (%v)", p, err)
		}
	}
}

// TestExecNoCgroupMadeAheadOnceStopped: after StopSpares, as the daemon
// shuts down, a program that ends leaves no cgroup made ahead.
func TestExecNoCgroupMadeAheadOnceStopped(t *testing.T) {
	d := spareDriver(t)
	req, _ := execRequest(t, "-mode", "sleep")
	p := execStart(t, d, req)
	d.StopSpares()
	execStop(t, p, execWaitLimit)
	// A spare's place is held before the Process is done.
	if spareHeld(d, "t") {
		t.Fatal("a cgroup made ahead while shutting down")
	}
	if left := groupsNamed(t, d, "t"); len(left) != 0 {
		t.Fatalf("cgroups left once the program ended: %v", left)
	}
}

// TestExecStartSurvivesACgroupMadeAheadRemovedFromOutside: a cgroup made
// ahead that an admin removed (an rmdir of empty leftovers) does not fail
// the next start, with or without memory_max: it runs in a new one.
func TestExecStartSurvivesACgroupMadeAheadRemovedFromOutside(t *testing.T) {
	for _, memMax := range []int64{0, 256 << 20} {
		t.Run("memory_max="+strconv.FormatInt(memMax, 10), func(t *testing.T) {
			d := spareDriver(t)
			req, _ := execRequest(t, "-mode", "sleep")
			req.Spec.MemoryMax = memMax
			execStop(t, execStart(t, d, req), execWaitLimit)
			var spare string
			testutil.Eventually(t, execWaitLimit, func() bool { spare = spareOf(d, "t"); return spare != "" },
				"no cgroup made ahead once the program is gone")
			if err := os.Remove(spare); err != nil {
				t.Fatal(err)
			}
			p := execStart(t, d, req)
			defer execStop(t, p, execWaitLimit)
			if got := cgroupOf(t, p.Pid()); filepath.Base(got) == filepath.Base(spare) {
				t.Fatalf("program in the removed cgroup %s", got)
			}
		})
	}
}
