package execdriver

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

func TestExecFreezeStopsTheWholeGroupAndThawResumesIt(t *testing.T) {
	d := newExecTestDriver(t)
	addr := testutil.FreeAddr(t)
	req, dir := execRequest(t, "-mode", "echo", "-listen", addr, "-pidfile", "app.pid", "-grandchild", "gc.pid")
	p := execStart(t, d, req)
	pid := testutil.ReadPidFile(t, filepath.Join(dir, "app.pid"))
	gc := testutil.ReadPidFile(t, filepath.Join(dir, "gc.pid"))
	t.Cleanup(func() { syscall.Kill(gc, syscall.SIGKILL) })
	fz, ok := p.(lifecycle.Freezer)
	if !ok {
		t.Fatal("the exec driver's process is no lifecycle.Freezer")
	}
	ctx := context.Background()
	if err := fz.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{pid, gc} {
		testutil.Eventually(t, execWaitLimit, func() bool { return testutil.Frozen(id) },
			"pid %d not stopped after Freeze: state %q", id, testutil.ProcState(id))
	}
	if err := fz.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{pid, gc} {
		testutil.Eventually(t, execWaitLimit, func() bool { return !testutil.Frozen(id) && testutil.ProcState(id) != 0 },
			"pid %d not running after Thaw: state %q", id, testutil.ProcState(id))
	}
	if got := testutil.EchoLine(t, addr, "thawed", execWaitLimit); got != "thawed" {
		t.Fatalf("echo after Thaw = %q", got)
	}
	execStop(t, p, 300*time.Millisecond)
	// Gone: nothing to thaw, and no pgid that may have been reused is
	// signalled.
	if err := fz.Thaw(ctx); err != nil {
		t.Errorf("Thaw after the stop: %v", err)
	}
}
