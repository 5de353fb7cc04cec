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
// "" when there is none.
func spareOf(d *Driver, app string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b := d.spares[app]; b != nil {
		return b.group.Path()
	}
	return ""
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
