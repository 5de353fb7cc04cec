package lifecycle

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// scaled returns an on-demand echo app with scale sc.
func (h *harness) scaled(name string, sc appfile.Scale, args ...string) *appfile.Spec {
	spec := h.spec(name, args...)
	spec.Scale = sc
	return spec
}

// waitInstances waits until app has exactly n instances, all ready, and
// returns its status.
func (h *harness) waitInstances(name string, n int) AppStatus {
	h.t.Helper()
	var st AppStatus
	testutil.Eventually(h.t, mgrWait, func() bool {
		st = h.status(name)
		if len(st.Instances) != n {
			return false
		}
		for _, in := range st.Instances {
			if in.State != Ready {
				return false
			}
		}
		return true
	}, "app %q has not %d ready instances", name, n)
	return st
}

// instanceConns returns the open connections of each instance by index.
func instanceConns(st AppStatus) map[int]int {
	out := map[int]int{}
	for _, in := range st.Instances {
		out[in.Index] = in.Connections
	}
	return out
}

// dialEcho opens a connection to up and checks that it echoes.
func dialEcho(t *testing.T, up netip.AddrPort) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", up.String(), mgrWait)
	if err != nil {
		t.Fatalf("dialing %v: %v", up, err)
	}
	t.Cleanup(func() { c.Close() })
	roundTrip(t, c, "hi")
	return c
}

// roundTrip writes msg on c and reads it back.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(mgrWait)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("writing: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo = %q, %v; want %q", buf, err, msg)
	}
}

func TestScaleLoadBeyondTargetStartsSecondInstance(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.scaled("web", appfile.Scale{Max: 3, TargetConnections: 2}, "-print-env", "INSTANCE")})
	// Two leases: instance 0 is at its target, and no more.
	up0, _ := h.wake("web")
	h.wake("web")
	if st := h.status("web"); len(st.Instances) != 1 || st.Starts != 1 {
		t.Fatalf("at the target: %s %+v, want one instance", fmtStatus(st), st.Instances)
	}
	// The third goes beyond it: it is served at once by instance 0 while
	// instance 1 starts.
	up, _ := h.wake("web")
	if up != up0 {
		t.Fatalf("third lease went to %v, want the ready instance %v", up, up0)
	}
	st := h.waitInstances("web", 2)
	if st.Starts != 2 || st.Connections != 3 {
		t.Fatalf("after scaling up: %s", fmtStatus(st))
	}
	in0, in1 := st.Instances[0], st.Instances[1]
	if in0.Index != 0 || in1.Index != 1 || in0.Pid == in1.Pid || !testutil.ProcessAlive(in1.Pid) || in0.Upstream == in1.Upstream {
		t.Fatalf("instances %+v, want indexes 0 and 1 with their own process and upstream", st.Instances)
	}
	if st.Pid != in0.Pid || st.Upstream != in0.Upstream {
		t.Errorf("top-level pid %d upstream %s, want instance 0's", st.Pid, st.Upstream)
	}
	h.waitLog(`msg="app started"`, "app=web", "reason=scale", "instance=1")
	b, err := os.ReadFile(filepath.Join(h.cfg.StateDir, "logs", "web.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "INSTANCE=0\n") || !strings.Contains(string(b), "INSTANCE=1\n") {
		t.Fatalf("log lacks INSTANCE=0 and INSTANCE=1:\n%s", b)
	}
	// The next lease goes to the new, emptier instance, and it serves.
	up, _ = h.wake("web")
	if up.String() != in1.Upstream {
		t.Fatalf("fourth lease went to %v, want instance 1 at %s", up, in1.Upstream)
	}
	dialEcho(t, up)
	if got := instanceConns(h.status("web")); got[0] != 3 || got[1] != 1 {
		t.Fatalf("connections per instance %v, want 0:3 1:1", got)
	}
}

func TestScaleSpreadsByLeastConnections(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.scaled("web", appfile.Scale{Max: 3, Min: 3, TargetConnections: 100})})
	h.wake("web") // the first wake starts instance 0; min adds 1 and 2
	h.waitInstances("web", 3)
	releases := map[int][]func(){}
	byUp := map[string]int{}
	for _, in := range h.status("web").Instances {
		byUp[in.Upstream] = in.Index
	}
	for range 5 { // with the first lease: 6 leases, 2 each
		up, release := h.wake("web")
		dialEcho(t, up)
		i := byUp[up.String()]
		releases[i] = append(releases[i], release)
	}
	if got := instanceConns(h.status("web")); got[0] != 2 || got[1] != 2 || got[2] != 2 {
		t.Fatalf("connections per instance %v, want 2 each", got)
	}
	// Instance 1 loses both its leases: the next two go to it.
	for _, r := range releases[1] {
		r()
	}
	for range 2 {
		up, _ := h.wake("web")
		if byUp[up.String()] != 1 {
			t.Fatalf("lease went to instance %d, want 1 (fewest connections): %v", byUp[up.String()], instanceConns(h.status("web")))
		}
	}
	if st := h.status("web"); st.Connections != 6 || st.Starts != 3 {
		t.Fatalf("after spreading: %s", fmtStatus(st))
	}
	// Stop acts on every instance.
	pids := []int{}
	for _, in := range h.status("web").Instances {
		pids = append(pids, in.Pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Stop(ctx, "web", "manual"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if testutil.ProcessAlive(pid) {
			t.Errorf("pid %d alive after Stop", pid)
		}
	}
	if st := h.status("web"); st.State != Stopped || len(st.Instances) != 0 {
		t.Fatalf("after Stop: %s %+v", fmtStatus(st), st.Instances)
	}
}

func TestScaleIdleInstancesStopDownToMin(t *testing.T) {
	for _, floor := range []int{0, 1} {
		t.Run("min="+strconv.Itoa(floor), func(t *testing.T) {
			h := newHarness(t)
			spec := h.scaled("web", appfile.Scale{Max: 2, Min: floor, TargetConnections: 1})
			spec.IdleTimeout = 200 * time.Millisecond
			h.m.Apply([]*appfile.Spec{spec})
			_, r1 := h.wake("web")
			_, r2 := h.wake("web") // beyond the target: instance 1 starts
			st := h.waitInstances("web", 2)
			pid1 := st.Instances[1].Pid
			r1()
			r2()
			if floor == 0 {
				// The usual on-demand behaviour: the last one stops too.
				h.waitState("web", Stopped)
				if st := h.status("web"); len(st.Instances) != 0 {
					t.Fatalf("stopped app has instances %+v", st.Instances)
				}
				return
			}
			h.waitLog(`msg="app instance stopped"`, "app=web", "reason=idle")
			st = h.waitInstances("web", 1)
			if st.State != Ready || st.Starts != 2 {
				t.Fatalf("after the idle stop: %s", fmtStatus(st))
			}
			// Instance 1 had no lease since it got ready: it went first.
			if st.Instances[0].Index != 0 || testutil.ProcessAlive(pid1) {
				t.Errorf("after the idle stop: %+v, instance 1 (pid %d) alive %v", st.Instances, pid1, testutil.ProcessAlive(pid1))
			}
			// At min, no idle timer is left to stop the last one.
			h.m.mu.Lock()
			_, armed := nextIdle(h.m.apps["web"])
			h.m.mu.Unlock()
			if armed {
				t.Fatal("an idle stop is still due at scale.min")
			}
		})
	}
}

func TestScaleCrashedInstanceLosesOnlyItsConnections(t *testing.T) {
	// A long backoff: no replacement starts while the test looks.
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Minute, 2*time.Minute })
	h.m.Apply([]*appfile.Spec{h.scaled("web", appfile.Scale{Max: 2, TargetConnections: 1})})
	up0, _ := h.wake("web")
	c0 := dialEcho(t, up0)
	h.wake("web") // beyond the target: instance 1 starts
	st := h.waitInstances("web", 2)
	up1, _ := h.wake("web") // the emptier one
	if up1.String() != st.Instances[1].Upstream {
		t.Fatalf("lease went to %v, want instance 1 %s", up1, st.Instances[1].Upstream)
	}
	c1 := dialEcho(t, up1)

	if err := syscall.Kill(st.Instances[1].Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Its connection is lost...
	_ = c1.SetReadDeadline(time.Now().Add(mgrWait))
	if n, err := c1.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from the killed instance", n)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("connection to the killed instance still open")
	}
	h.waitLog(`msg="app exited"`, "app=web", "instance=1")
	// ... the other instance's is not, and the app stays ready.
	roundTrip(t, c0, "still here")
	st = h.waitInstances("web", 1)
	if st.State != Ready || st.Instances[0].Index != 0 {
		t.Fatalf("after the crash: %s %+v", fmtStatus(st), st.Instances)
	}
	// New connections go to the survivor; the crash holds off scaling up.
	for range 3 {
		up, _ := h.wake("web")
		if up != up0 {
			t.Fatalf("new lease went to %v, want the survivor %v", up, up0)
		}
		dialEcho(t, up)
	}
	if st := h.status("web"); st.Starts != 2 || len(st.Instances) != 1 || !strings.Contains(st.LastError, "exited") {
		t.Fatalf("after new leases: %s %+v", fmtStatus(st), st.Instances)
	}
}

func TestScaleNeverStartsTwoAtOnce(t *testing.T) {
	h := newHarness(t)
	// A slow start keeps instance 1 starting while the burst is leased.
	h.m.Apply([]*appfile.Spec{h.scaled("web", appfile.Scale{Max: 4, TargetConnections: 1}, "-delay", "2s")})
	const burst = 20
	var wg sync.WaitGroup
	errs := make(chan error, burst)
	for range burst {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
			defer cancel()
			_, release, err := h.m.Wake(ctx, "web")
			if err != nil {
				errs <- err
				return
			}
			t.Cleanup(release)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := h.status("web")
	states := []State{}
	for _, in := range st.Instances {
		states = append(states, in.State)
	}
	if st.Starts != 2 || !slices.Equal(states, []State{Ready, Starting}) {
		t.Fatalf("after a burst of %d: %s instances %v, want instance 0 ready and one more starting", burst, fmtStatus(st), states)
	}
	// Once it is ready, it is the emptier one: no third start is due.
	h.waitInstances("web", 2)
	h.wake("web")
	if st := h.status("web"); st.Starts != 2 {
		t.Fatalf("after instance 1 got ready: %s", fmtStatus(st))
	}
}

func TestScaleMaxOneKeepsOneInstance(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.scaled("web", appfile.Scale{Max: 1, TargetConnections: 1})})
	up0, _ := h.wake("web")
	for range 5 {
		if up, _ := h.wake("web"); up != up0 {
			t.Fatalf("lease went to %v, want %v", up, up0)
		}
	}
	if st := h.status("web"); st.Starts != 1 || len(st.Instances) != 1 || st.Connections != 6 {
		t.Fatalf("scale.max 1: %s %+v", fmtStatus(st), st.Instances)
	}
}

func TestScalePersistentStartsMinAtBootAndReloadAppliesLive(t *testing.T) {
	h := newHarness(t)
	spec := h.scaled("web", appfile.Scale{Max: 3, Min: 2, TargetConnections: 10})
	spec.Mode = appfile.Persistent
	h.m.Apply([]*appfile.Spec{spec})
	st := h.waitInstances("web", 2)
	pid0 := st.Instances[0].Pid

	// Raising min adds one, without a restart.
	more := *spec
	more.Scale.Min = 3
	h.m.Apply([]*appfile.Spec{&more})
	st = h.waitInstances("web", 3)
	// Lowering max stops the highest.
	fewer := more
	fewer.Scale = appfile.Scale{Max: 1, TargetConnections: 10}
	h.m.Apply([]*appfile.Spec{&fewer})
	st = h.waitInstances("web", 1)
	if st.Instances[0].Pid != pid0 || st.Restarts != 0 {
		t.Fatalf("after lowering max: %s %+v, want instance 0 (pid %d) kept", fmtStatus(st), st.Instances, pid0)
	}
}
