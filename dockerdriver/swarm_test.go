package dockerdriver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// needSwarm makes this engine a single-node swarm manager if it is not in a
// swarm, and leaves the swarm when the test ends only if it made it one.
func needSwarm(t *testing.T) {
	t.Helper()
	needImages(t)
	state := docker(t, "info", "-f", "{{.Swarm.LocalNodeState}}")
	switch state {
	case "active":
		if docker(t, "info", "-f", "{{.Swarm.ControlAvailable}}") != "true" {
			t.Skip("this engine is a swarm worker, not a manager: cannot create services; skipping the swarm tests")
		}
		return
	case "inactive":
	default:
		t.Skipf("swarm state %q: skipping the swarm tests", state)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "swarm", "init", "--advertise-addr", "127.0.0.1").CombinedOutput(); err != nil {
		t.Skipf("cannot make this engine a swarm (docker swarm init: %v: %s): skipping the swarm tests", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "docker", "swarm", "leave", "--force").CombinedOutput(); err != nil {
			t.Errorf("leaving the swarm this test created: %v\n%s", err, out)
		}
	})
}

// createService creates a service of testapp in echo mode with 0 replicas,
// port 8080 published on hostPort in host mode (one node, no routing
// mesh), removed when the test ends.
func createService(t *testing.T, hostPort int) string {
	t.Helper()
	name := fmt.Sprintf("dynapm-test-svc-%d", os.Getpid())
	docker(t, "service", "create", "-d", "--no-resolve-image", "--name", name, "--replicas", "0",
		"--stop-grace-period", "2s", "--publish", fmt.Sprintf("mode=host,target=8080,published=%d", hostPort),
		imageBase, "-mode", "echo", "-listen", "0.0.0.0:8080")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "docker", "service", "rm", name).CombinedOutput(); err != nil {
			t.Errorf("removing service %s: %v\n%s", name, err, out)
		}
	})
	return name
}

func replicas(t *testing.T, service string) string {
	t.Helper()
	return docker(t, "service", "inspect", "-f", "{{.Spec.Mode.Replicated.Replicas}}", service)
}

func runningTaskCount(t *testing.T, service string) int {
	t.Helper()
	out := docker(t, "service", "ps", "--filter", "desired-state=running", "--format", "{{.CurrentState}}", service)
	return strings.Count(out, "Running")
}

func TestSwarmScalesServiceUpOnWakeAndDownOnStop(t *testing.T) {
	needSwarm(t)
	port := testutil.FreePort(t)
	svc := createService(t, port)
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(fmt.Sprintf("driver: swarm\nservice: %s\nupstream: '127.0.0.1:%d'\nstop_timeout: 2s\n", svc, port))})

	up, release := h.Wake()
	if got := echo(t, up, "through swarm"); got != "through swarm" {
		t.Fatalf("echo = %q", got)
	}
	if got := replicas(t, svc); got != "1" {
		t.Errorf("replicas after the wake = %s, want 1", got)
	}
	release()
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	if err := h.M.Stop(ctx, "app", "manual"); err != nil {
		t.Fatal(err)
	}
	if got := replicas(t, svc); got != "0" {
		t.Errorf("replicas after the stop = %s, want 0", got)
	}
	if n := runningTaskCount(t, svc); n != 0 {
		t.Errorf("%d tasks still running after the stop", n)
	}

	// Scaled down by someone else: noticed, and the next wake scales up.
	h.Wake()
	docker(t, "service", "scale", "-d", svc+"=0")
	st := h.WaitState(lifecycle.Stopped)
	if st.LastError != "" {
		t.Errorf("LastError = %q, want none: an outside scale-down is not a crash", st.LastError)
	}
	up, _ = h.Wake()
	if got := echo(t, up, "again"); got != "again" {
		t.Fatalf("echo after the outside scale-down = %q", got)
	}
}
