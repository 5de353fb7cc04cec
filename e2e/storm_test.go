package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// starts counts the spawns the daemon reported: successful and failed.
func starts(d *runningDaemon) int {
	out := d.out.String()
	return strings.Count(out, `msg="app started"`) + strings.Count(out, `msg="app failed to start"`)
}

// startsAfterServed is starts once at least one is logged: a start's
// line is written after its first clients are let through, so a test that
// was served may look before it is there.
func startsAfterServed(t *testing.T, d *runningDaemon) int {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool { return starts(d) >= 1 }, "no start logged:\n%s", d.out)
	return starts(d)
}

// storm runs n connections through workers goroutines, each running one
// connection with do, and returns the longest a connection took.
func storm(n, workers int, do func(i int)) time.Duration {
	var (
		next    atomic.Int64
		longest atomic.Int64
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				begin := time.Now()
				do(i)
				took := int64(time.Since(begin))
				for {
					old := longest.Load()
					if took <= old || longest.CompareAndSwap(old, took) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	return time.Duration(longest.Load())
}

func TestCrashLoopUnderAConnectionStormIsBoundedAndRecoversOnFix(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	bin := testutil.TestApp(t)
	file := filepath.Join(apps, "broken.yaml")
	// A start_timeout far above "fail fast": a client held until it ran
	// out would show.
	testutil.WriteFile(t, file, fmt.Sprintf("listen: %q\ncommand: [%q, \"-crash\"]\nstart_timeout: 30s\n", listen, bin))
	d := startDaemon(t, apps, "-state", state)

	const conns = 200
	var served atomic.Int64
	began := time.Now()
	longest := storm(conns, 20, func(i int) {
		if tryEcho(listen, "x") {
			served.Add(1)
		}
	})
	elapsed := time.Since(began)
	if served.Load() != 0 {
		t.Fatalf("%d connections served by an app that always crashes", served.Load())
	}
	// Backoff from 1s doubling: in elapsed, at most one start plus one per
	// backoff period that could have ended (and one for luck).
	limit := 2
	for d := time.Second; d <= elapsed+time.Second; d *= 2 {
		limit++
	}
	if n := starts(d); n < 1 || n > limit {
		t.Fatalf("%d starts for %d connections in %v; want 1..%d (bounded by the backoff)", n, conns, elapsed, limit)
	}
	if longest > 10*time.Second {
		t.Fatalf("a connection was held %v while the app crashed or backed off; want a fast close", longest)
	}
	if st := statusOf(t, state, "broken")["state"]; st != "failed" {
		t.Fatalf("state after the storm = %v, want failed", st)
	}

	// The fix: the program no longer crashes. The edit resets the backoff.
	testutil.WriteFile(t, file, fmt.Sprintf("listen: %q\ncommand: [%q, \"-mode\", \"echo\"]\nstart_timeout: 30s\n", listen, bin))
	testutil.Eventually(t, 20*time.Second, func() bool { return tryEcho(listen, "fixed") },
		"the fixed app is not served")
}

func TestSilentClientsHoldNoMoreThanMaxPendingAndStartTimeout(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	bin := testutil.TestApp(t)
	// The program takes far longer to start than start_timeout allows.
	testutil.WriteFile(t, filepath.Join(apps, "slow.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-delay\", \"30s\"]\nstart_timeout: 1s\nstop_timeout: 1s\nmax_pending: 5\n", listen, bin))
	d := startDaemon(t, apps)
	pid := d.cmd.Process.Pid
	before := fdCount(t, pid)

	const clients = 40
	closedAfter := make(chan time.Duration, clients)
	for range clients {
		go func() {
			begin := time.Now()
			c, err := net.DialTimeout("tcp", listen, 5*time.Second)
			if err != nil {
				closedAfter <- -1
				return
			}
			defer c.Close()
			// Never send; wait for the daemon to close.
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err = c.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				closedAfter <- -1
				return
			}
			closedAfter <- time.Since(begin)
		}()
	}
	fast := 0
	for range clients {
		took := <-closedAfter
		if took < 0 {
			t.Fatal("a silent client was never closed")
		}
		if took < 900*time.Millisecond {
			fast++ // refused at once: over max_pending
		}
	}
	// At most max_pending clients were held to the start timeout; the rest
	// were refused before it (a handful of spares for clients that came
	// after the first wait failed and started a new one is fine).
	if fast < clients-5-5 {
		t.Fatalf("only %d of %d silent clients closed before start_timeout; max_pending 5 should refuse the rest", fast, clients)
	}
	// The first start opens a few descriptors for good (the reaper's
	// pipes, the app's log).
	testutil.Eventually(t, 20*time.Second, func() bool { return fdCount(t, pid) <= before+8 },
		"daemon holds %d descriptors after the silent clients left, %d before: %s", fdCount(t, pid), before, fdList(pid))
}

func TestConnectAndCloseStormWakesTheAppOnce(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-delay\", \"300ms\", \"-pidfile\", %q]\nidle_timeout: 10m\n",
		listen, testutil.TestApp(t), pidfile))
	d := startDaemon(t, apps)
	pid := d.cmd.Process.Pid
	before := fdCount(t, pid)

	const conns = 2000
	var dialErrs atomic.Int64
	began := time.Now()
	storm(conns, 50, func(int) {
		c, err := net.DialTimeout("tcp", listen, 5*time.Second)
		if err != nil {
			dialErrs.Add(1)
			return
		}
		c.Close()
	})
	if elapsed := time.Since(began); elapsed > 30*time.Second {
		t.Fatalf("%d connect-and-close took %v", conns, elapsed)
	}
	if n := dialErrs.Load(); n > 0 {
		t.Fatalf("%d of %d connects failed", n, conns)
	}
	// Connections past max_pending were refused; those held are served
	// (and end at once) when the app is ready.
	testutil.Eventually(t, 20*time.Second, func() bool { return tryEcho(listen, "after the storm") },
		"no echo after the storm")
	if n := startsAfterServed(t, d); n != 1 {
		t.Fatalf("%d starts for a storm of %d connect-and-close, want 1", n, conns)
	}
	// The first start opens a few descriptors for good (the reaper's
	// pipes, the app's log): a leak per connection would be thousands.
	testutil.Eventually(t, 20*time.Second, func() bool { return fdCount(t, pid) <= before+8 },
		"daemon holds %d descriptors after the storm, %d before: %s", fdCount(t, pid), before, fdList(pid))
}
