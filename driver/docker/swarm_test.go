package dockerdriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// swarmSetup makes this engine a single-node swarm manager, once per test
// binary, if it is in no swarm; leaveSwarm, after the tests, leaves only a
// swarm it made. It returns why the swarm tests must skip, if they must.
var swarmSetup = sync.OnceValue(func() string {
	state, err := dockerOutput("info", "-f", "{{.Swarm.LocalNodeState}}")
	if err != nil {
		return err.Error()
	}
	switch state {
	case "active":
		if manager, err := dockerOutput("info", "-f", "{{.Swarm.ControlAvailable}}"); err != nil || manager != "true" {
			return "this engine is a swarm worker, not a manager: cannot create services"
		}
		return ""
	case "inactive":
	default:
		return fmt.Sprintf("swarm state %q", state)
	}
	if out, err := dockerOutput("swarm", "init", "--advertise-addr", "127.0.0.1"); err != nil {
		return fmt.Sprintf("cannot make this engine a swarm (docker swarm init: %v: %s)", err, out)
	}
	swarmMu.Lock()
	swarmMade = true
	swarmMu.Unlock()
	return ""
})

var (
	swarmMu   sync.Mutex
	swarmMade bool // swarmSetup ran docker swarm init
)

// leaveSwarm leaves the swarm swarmSetup made, if it made one.
func leaveSwarm() error {
	swarmMu.Lock()
	defer swarmMu.Unlock()
	if !swarmMade {
		return nil
	}
	if out, err := dockerOutput("swarm", "leave", "--force"); err != nil {
		return fmt.Errorf("leaving the swarm the tests created: %v\n%s", err, out)
	}
	return nil
}

// needSwarm skips the test unless this engine is (or could be made) a
// swarm manager.
func needSwarm(t *testing.T) {
	t.Helper()
	needEngine(t)
	if why := swarmSetup(); why != "" {
		t.Skipf("%s: skipping the swarm tests", why)
	}
}

// createService creates a service of testapp in echo mode with 0
// replicas, port 8080 published on hostPort in host mode (one node, no
// routing mesh) unless hostPort is 0, removed when the test ends.
func createService(t *testing.T, hostPort int) string {
	t.Helper()
	needImages(t)
	containerMu.Lock()
	containerSeq++
	name := fmt.Sprintf("dynapm-test-svc-%d-%d", os.Getpid(), containerSeq)
	containerMu.Unlock()
	args := []string{"service", "create", "-d", "--no-resolve-image", "--name", name, "--replicas", "0", "--stop-grace-period", "2s"}
	if hostPort != 0 {
		args = append(args, "--publish", fmt.Sprintf("mode=host,target=8080,published=%d", hostPort))
	}
	docker(t, append(args, imageBase, "-mode", "echo", "-listen", "0.0.0.0:8080")...)
	t.Cleanup(func() {
		if out, err := dockerOutput("service", "rm", name); err != nil {
			t.Errorf("removing service %s: %v\n%s", name, err, out)
		}
	})
	return name
}

// swarmSpec is the YAML of a swarm app for service, reached at port.
func swarmSpec(service string, port int, extra string) string {
	return fmt.Sprintf("driver: swarm\nservice: %s\nupstream: '127.0.0.1:%d'\nstop_timeout: 2s\n%s", service, port, extra)
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

// TestSwarmOnAnEngineOutsideASwarmSaysSo runs before the other swarm tests
// make this engine a swarm (declaration order): it cannot be shown
// without leaving a swarm, which the tests never do midway.
func TestSwarmOnAnEngineOutsideASwarmSaysSo(t *testing.T) {
	needEngine(t)
	if state := docker(t, "info", "-f", "{{.Swarm.LocalNodeState}}"); state != "inactive" {
		t.Skipf("this engine is in a swarm (state %q): an engine outside one cannot be shown without leaving it", state)
	}
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(swarmSpec("dynapm-test-svc", testutil.FreePort(t), ""))})
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	err := h.M.Start(ctx, "app", "manual")
	if !errors.Is(err, lifecycle.ErrStartFailed) {
		t.Fatalf("Start = %v, want a failed start", err)
	}
	for _, want := range []string{`starting app "app": start failed: service "dynapm-test-svc": the Docker Engine is not a swarm manager`, "docker swarm init", "DOCKER_HOST"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start = %v, want it to contain %q", err, want)
		}
	}
}

func TestSwarmScalesServiceUpOnWakeAndDownOnStop(t *testing.T) {
	needSwarm(t)
	port := testutil.FreePort(t)
	svc := createService(t, port)
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(swarmSpec(svc, port, ""))})

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
	if want := `service \"` + svc + `\" was scaled to 0`; !strings.Contains(h.Logs.String(), want) {
		t.Errorf("log does not say %s:\n%s", want, h.Logs)
	}
	up, _ = h.Wake()
	if got := echo(t, up, "again"); got != "again" {
		t.Fatalf("echo after the outside scale-down = %q", got)
	}
}

func TestSwarmMissingServiceSaysSo(t *testing.T) {
	needSwarm(t)
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(swarmSpec("dynapm-test-no-such-service", testutil.FreePort(t), ""))})
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	err := h.M.Start(ctx, "app", "manual")
	if !errors.Is(err, lifecycle.ErrStartFailed) {
		t.Fatalf("Start = %v, want a failed start", err)
	}
	for _, want := range []string{`starting app "app": start failed: no service named "dynapm-test-no-such-service"`,
		"docker service create --name dynapm-test-no-such-service --replicas 0", "fix service: in the app file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start = %v, want it to contain %q", err, want)
		}
	}
}

func TestSwarmReplicasAreScaledUpOnWakeAndToZeroOnStop(t *testing.T) {
	needSwarm(t)
	// On one node two tasks cannot publish the same host port, and the
	// routing mesh is not reachable on 127.0.0.1 here: the upstream is a
	// listener of the test's, as a load balancer in front of the tasks
	// would be. Readiness still waits for both tasks to run.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	svc := createService(t, 0)
	h := newHarness(t, Config{})
	port := ln.Addr().(*net.TCPAddr).Port
	h.M.Apply([]*appfile.Spec{h.spec(swarmSpec(svc, port, "replicas: 2\n"))})

	_, release := h.Wake()
	if got := replicas(t, svc); got != "2" {
		t.Errorf("replicas after the wake = %s, want 2", got)
	}
	if n := runningTaskCount(t, svc); n != 2 {
		t.Errorf("%d tasks running once ready, want 2", n)
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
}

// The event watch starts before the scale-up, so that nothing after it is
// missed; an update event of the service from before (its creation's own
// follow-ups, say) must not read its 0 replicas as a stop from outside.
func TestSwarmCheckBeforeTheScaleUpIsNotAStopFromOutside(t *testing.T) {
	needSwarm(t)
	svc := createService(t, 0)
	d := NewSwarmDriver(Config{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	info, err := d.c.inspectService(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	p := &serviceProcess{driver: d, app: "app", service: svc, id: info.ID, ctx: ctx}
	p.check(ctx)
	select {
	case <-p.Done():
		t.Fatalf("a check before the scale-up ended the app: %v", p.Err())
	default:
	}
	// Once scaled up, 0 replicas are somebody else's doing.
	p.up.Store(true)
	p.check(ctx)
	select {
	case <-p.Done():
		if !errors.Is(p.Err(), lifecycle.ErrStoppedOutside) {
			t.Errorf("after the scale-up, 0 replicas: %v, want a stop from outside", p.Err())
		}
	default:
		t.Fatal("after the scale-up, a check of a service with 0 replicas did not end the app")
	}
}
