package dockerdriver

import (
	"context"
	"testing"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/managertest"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// paused reports whether the engine has container name paused.
func paused(t *testing.T, name string) bool {
	t.Helper()
	return docker(t, "inspect", "-f", "{{.State.Paused}}", name) == "true"
}

func TestDockerFreezePausesTheContainerAndAWakeUnpausesIt(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "idle_timeout: 300ms\nidle_action: freeze\nstop_timeout: 2s\n", name))})
	up, release := h.Wake()
	pid := h.Status().Pid
	release()

	h.WaitState(lifecycle.Frozen)
	if !paused(t, name) {
		t.Fatal("container not paused once the app is frozen")
	}
	up2, release := h.Wake()
	if got := echo(t, up2, "unpaused"); got != "unpaused" || up2 != up {
		t.Fatalf("echo after the freeze = %q through %v", got, up2)
	}
	if st := h.Status(); st.Pid != pid || st.Starts != 1 || paused(t, name) {
		t.Fatalf("after the wake: pid %d (was %d), %d starts, paused %v", st.Pid, pid, st.Starts, paused(t, name))
	}
	release()
	// A stop of the frozen app unpauses it first, then stops it.
	h.WaitState(lifecycle.Frozen)
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	if err := h.M.Stop(ctx, managertest.App, "manual"); err != nil {
		t.Fatal(err)
	}
	if running(t, name) || paused(t, name) {
		t.Errorf("container running %v, paused %v after the stop", running(t, name), paused(t, name))
	}
}
