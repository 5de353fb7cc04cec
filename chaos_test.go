package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// goroutines reads go_goroutines from the daemon's metrics endpoint.
func goroutines(t *testing.T, addr string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go_goroutines (\d+)`).FindStringSubmatch(scrapeMetrics(t, addr))
	if m == nil {
		t.Fatal("no go_goroutines in the metrics")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// processesRunning returns the live pids whose command line contains path.
func processesRunning(path string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), path) && testutil.ProcessAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestChaos runs clients against a dozen apps while it kills their
// processes, edits, removes and re-adds their files and starts, stops and
// restarts them through the CLI. Every connection must end (served or
// closed), nothing may leak, and every app must still wake afterwards.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos takes a while")
	}
	const (
		napps    = 12
		duration = 8 * time.Second
		clients  = 24
	)
	apps, state := t.TempDir(), stateDir(t)
	// A copy of testapp of this test's own, so that processes left behind
	// can be told from other tests' apps.
	bin := filepath.Join(t.TempDir(), "chaosapp")
	data, err := os.ReadFile(testutil.TestApp(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	metricsAddr := testutil.FreeAddr(t)
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	writeFile(t, config, fmt.Sprintf("metrics: %q\n", metricsAddr))
	listen := make([]string, napps)
	pidDir := t.TempDir()
	appFile := func(i, version int) string {
		return fmt.Sprintf("listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-pidfile\", %q]\nenv: {VERSION: \"%d\"}\nidle_timeout: 500ms\nstart_timeout: 10s\nstop_timeout: 1s\n",
			listen[i], bin, filepath.Join(pidDir, fmt.Sprintf("app%d.pid", i)), version)
	}
	for i := range napps {
		listen[i] = testutil.FreeAddr(t)
		writeFile(t, filepath.Join(apps, fmt.Sprintf("app%d.yaml", i)), appFile(i, 0))
	}
	d := startDaemon(t, apps, "-state", state, "-config", config)
	dpid := d.cmd.Process.Pid
	// Warm up: every app once, so that the baseline counts the
	// descriptors a first start opens for good (logs, the reaper).
	for i := range napps {
		if got := echoOnce(t, listen[i], "warm"); got != "warm" {
			t.Fatalf("app%d warm-up echo = %q", i, got)
		}
	}
	fdsBefore, grBefore := fdCount(t, dpid), goroutines(t, metricsAddr)

	stop := make(chan struct{})
	var (
		served, closed atomic.Int64
		wg             sync.WaitGroup
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (c + n) % napps
				msg := fmt.Sprintf("client %d message %d", c, n)
				// tryEcho bounds each connection by its deadline: a hang
				// or a wrong reply counts as closed, and the check below
				// catches a run where nothing was served.
				if tryEcho(listen[i], msg) {
					served.Add(1)
				} else {
					closed.Add(1)
				}
			}
		}()
	}
	// The chaos itself, from one goroutine, with a fixed seed.
	rng := rand.New(rand.NewPCG(7, 7))
	deadline := time.Now().Add(duration)
	removed := map[int]bool{}
	for version := 1; time.Now().Before(deadline); version++ {
		i := rng.IntN(napps)
		file := filepath.Join(apps, fmt.Sprintf("app%d.yaml", i))
		switch rng.IntN(6) {
		case 0: // SIGKILL the app's process
			if b, err := os.ReadFile(filepath.Join(pidDir, fmt.Sprintf("app%d.pid", i))); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		case 1: // edit: a changed env restarts a running app
			writeFile(t, file, appFile(i, version))
		case 2: // remove, or re-add a removed one
			if removed[i] {
				writeFile(t, file, appFile(i, version))
				delete(removed, i)
			} else if err := os.Remove(file); err == nil {
				removed[i] = true
			}
		default: // the CLI
			cmd := []string{"start", "stop", "restart"}[rng.IntN(3)]
			dynapm(t, cmd, fmt.Sprintf("app%d", i), "-state", state) // may fail: the app may be gone
		}
		time.Sleep(time.Duration(50+rng.IntN(100)) * time.Millisecond) // pacing of the chaos, not synchronisation
	}
	close(stop)
	wg.Wait()
	for i := range removed {
		writeFile(t, filepath.Join(apps, fmt.Sprintf("app%d.yaml", i)), appFile(i, 10000))
	}
	t.Logf("connections: %d served, %d closed", served.Load(), closed.Load())
	if served.Load() < closed.Load() {
		t.Fatalf("%d served, %d closed: most connections should be served", served.Load(), closed.Load())
	}
	// Every app wakes on the next connection.
	for i := range napps {
		testutil.Eventually(t, 20*time.Second, func() bool { return tryEcho(listen[i], "after") },
			"app%d does not wake after the chaos", i)
	}
	// No leak: once the apps are idle again, the daemon is back to about
	// its size before.
	testutil.Eventually(t, 20*time.Second, func() bool {
		return fdCount(t, dpid) <= fdsBefore+8 && goroutines(t, metricsAddr) <= grBefore+20
	}, "daemon leaks: %d fds (%d before), %d goroutines (%d before); fds %s",
		fdCount(t, dpid), fdsBefore, goroutines(t, metricsAddr), grBefore, fdList(dpid))

	// No zombie: every child the daemon had is reaped.
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, pid := range childrenOf(dpid, "") {
			if procState(pid) == 'Z' {
				return false
			}
		}
		return true
	}, "the daemon has unreaped children")
	// No orphan once the daemon is gone.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit after SIGTERM")
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(processesRunning(bin)) == 0 },
		"processes of the chaos apps outlive the daemon: %v", processesRunning(bin))
}
