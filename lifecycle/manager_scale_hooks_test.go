package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// countEvents counts the recorded events equal to e.
func countEvents(events []string, e string) int {
	n := 0
	for _, x := range events {
		if x == e {
			n++
		}
	}
	return n
}

func TestScaleEventsArePerInstance(t *testing.T) {
	ev := &recordedEvents{}
	h := newHarness(t, func(c *Config) { c.Events = ev })
	h.m.Apply([]*appfile.Spec{h.scaled("web", appfile.Scale{Max: 2, TargetConnections: 1})})
	h.wake("web")
	h.wake("web") // beyond the target: instance 1 starts
	h.waitInstances("web", 2)
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Stop(ctx, "web", "manual"); err != nil {
		t.Fatal(err)
	}
	got := ev.get()
	for e, want := range map[string]int{
		"started web connection": 1, "started web scale": 1, "ready web": 2, "stopped web manual": 2,
	} {
		if n := countEvents(got, e); n != want {
			t.Errorf("%q %d times, want %d; events %q", e, n, want, got)
		}
	}
	if len(got) != 6 {
		t.Errorf("events = %q, want 6", got)
	}
}

// outsideDriver is the exec driver with every exit reported as a stop from
// outside, as the docker and command drivers report one.
type outsideDriver struct{ Driver }

func (d outsideDriver) Start(ctx context.Context, req StartRequest) (Process, error) {
	p, err := d.Driver.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	return outsideProcess{p}, nil
}

type outsideProcess struct{ Process }

func (p outsideProcess) Err() error { return fmt.Errorf("%w: %w", ErrStoppedOutside, p.Process.Err()) }

func TestScaleInstanceStoppedOutsideLeavesTheOthersServing(t *testing.T) {
	ev := &recordedEvents{}
	h := newHarness(t, func(c *Config) {
		c.Events = ev
		c.Driver = outsideDriver{c.Driver}
		c.BackoffMin, c.BackoffMax = time.Minute, 2*time.Minute
	})
	h.m.Apply([]*appfile.Spec{h.scaled("web", appfile.Scale{Max: 2, TargetConnections: 1})})
	up0, _ := h.wake("web")
	c0 := dialEcho(t, up0)
	h.wake("web")
	st := h.waitInstances("web", 2)
	if err := syscall.Kill(st.Instances[1].Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitLog(`msg="app stopped from outside"`, "app=web", "instance=1")
	st = h.waitInstances("web", 1)
	if st.State != Ready || st.Instances[0].Index != 0 || st.LastError != "" {
		t.Fatalf("after the outside stop: %s %+v", fmtStatus(st), st.Instances)
	}
	roundTrip(t, c0, "still here")
	got := ev.get()
	if countEvents(got, "stopped web outside") != 1 || strings.Contains(strings.Join(got, ","), "crash") {
		t.Errorf("events = %q, want one outside stop and no crash", got)
	}
	// Not a crash: no backoff holds off the next instance.
	h.wake("web")
	h.wake("web")
	h.waitInstances("web", 2)
}

// oomDriver is the exec driver with every exit reported as the kernel's
// OOM kill at memory.max, as the exec driver reports one in a cgroup with
// the memory controller.
type oomDriver struct{ Driver }

func (d oomDriver) Start(ctx context.Context, req StartRequest) (Process, error) {
	p, err := d.Driver.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	return oomProcess{p}, nil
}

type oomProcess struct{ Process }

func (p oomProcess) Err() error { return fmt.Errorf("%w (%v)", ErrMemoryKilled, p.Process.Err()) }

func TestAnOOMKillAtMemoryMaxIsAStopForMemoryNotACrash(t *testing.T) {
	ev := &recordedEvents{}
	h := newHarness(t, func(c *Config) {
		c.Events = ev
		c.Driver = oomDriver{c.Driver}
		c.BackoffMin, c.BackoffMax = time.Minute, 2*time.Minute
	})
	h.m.Apply([]*appfile.Spec{h.spec("web")})
	h.wake("web")
	st := h.waitState("web", Ready)
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitLog(`msg="app stopped by the kernel at memory_max"`, "app=web", "reason=memory")
	st = h.waitState("web", Stopped)
	if !strings.Contains(st.LastError, "killed by the kernel at memory_max") {
		t.Errorf("last error %q does not say memory_max", st.LastError)
	}
	got := ev.get()
	if countEvents(got, "stopped web memory") != 1 || strings.Contains(strings.Join(got, ","), "crash") {
		t.Errorf("events = %q, want one memory stop and no crash", got)
	}
	// Not a crash: no backoff holds off the next start.
	h.wake("web")
	h.waitState("web", Ready)
}
