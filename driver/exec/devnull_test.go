package execdriver

import (
	"os"
	"testing"

	"github.com/dynapm/dynapm/internal/exectest"
)

// TestExecSpawnerTakesAsManyFilesAsItCan: a program with as many
// descriptors as the spawner helper takes is started by the helper, not
// by the daemon's own fork: its stdin, /dev/null, is not sent along.
func TestExecSpawnerTakesAsManyFilesAsItCan(t *testing.T) {
	if !exectest.WithSpawner() {
		t.Skip("only with the spawner helper")
	}
	d := newExecTestDriver(t)
	d.mu.Lock()
	cgroups := d.sub != nil
	d.mu.Unlock()
	// The helper takes 250 descriptors: the log (stdout and stderr), the
	// cgroup's, and the sockets.
	n := 250 - 1
	if cgroups {
		n--
	}
	req, _ := execRequest(t, "-mode", "sleep")
	for range n {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		req.Sockets = append(req.Sockets, f)
	}
	p := execStart(t, d, req)
	defer execStop(t, p, execWaitLimit)
	if ppid := parentOf(t, p.Pid()); ppid == os.Getpid() {
		t.Fatalf("program %d started by the daemon's fork, want the helper's", p.Pid())
	}
}
