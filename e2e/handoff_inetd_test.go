package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// inetdScript is an inetd program: it marks itself running in $RUN, says
// its pid and how many programs run (itself included) on stdout, answers
// the line it reads on stdin through fd 3, and lingers a moment so that
// programs overlap.
const inetdScript = `touch "$RUN/$$"; echo "pid $$ running $(ls "$RUN" | wc -l)"; read line; echo "got $line" >&3; sleep 0.2; rm "$RUN/$$"`

func TestInetdRunsAProgramPerConnectionWithinScaleMax(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	run := t.TempDir()
	listen := testutil.FreeAddr(t)
	const maxPrograms, conns = 10, 50
	testutil.WriteFile(t, filepath.Join(apps, "shell.yaml"), fmt.Sprintf(
		"listen: %q\nhandoff: inetd\nscale: {max: %d}\ncommand: %q\nenv: {RUN: %q}\nstop_timeout: 2s\n",
		listen, maxPrograms, inetdScript, run))
	d := startDaemon(t, apps, "-state", state)

	type answer struct {
		pid, running int
		err          error
	}
	answers := make([]answer, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			answers[i].err = func() error {
				c, err := net.DialTimeout("tcp", listen, 5*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				first, err := r.ReadString('\n')
				if err != nil {
					return fmt.Errorf("first line: %w (%q)", err, first)
				}
				if _, err := fmt.Sscanf(first, "pid %d running %d", &answers[i].pid, &answers[i].running); err != nil {
					return fmt.Errorf("first line %q: %w", first, err)
				}
				fmt.Fprintf(c, "hello %d\n", i)
				second, err := r.ReadString('\n')
				if err != nil || second != fmt.Sprintf("got hello %d\n", i) {
					return fmt.Errorf("second line %q: %v", second, err)
				}
				return nil
			}()
		})
	}
	wg.Wait()
	pids := map[int]bool{}
	most := 0
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("connection %d: %v", i, a.err)
		}
		if pids[a.pid] {
			t.Errorf("pid %d served two connections", a.pid)
		}
		pids[a.pid] = true
		most = max(most, a.running)
	}
	if most > maxPrograms {
		t.Errorf("%d programs ran at once; scale.max is %d", most, maxPrograms)
	}
	if most < 2 {
		t.Errorf("at most %d program ran at once: the connections were not served in parallel", most)
	}
	t.Logf("%d connections, %d programs, at most %d at once", conns, len(pids), most)

	// None left: every program ends with its connection.
	testutil.Eventually(t, 20*time.Second, func() bool {
		for pid := range pids {
			if testutil.ProcessAlive(pid) {
				return false
			}
		}
		entries, _ := os.ReadDir(run)
		return len(entries) == 0
	}, "inetd programs are left:\n%s", d.out)
	if strings.Contains(d.out.String(), "level=WARN") {
		t.Errorf("warnings in the daemon's log:\n%s", d.out)
	}
}

// An inetd program's connection is also fd 3 with LISTEN_FDS=1, and it is
// stopped (with its process group) when the daemon shuts down.
func TestInetdProgramGetsTheConnectionAsListenFDs(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "env.yaml"), fmt.Sprintf(
		"listen: %q\nhandoff: inetd\ncommand: 'echo \"$LISTEN_FDS $LISTEN_FDNAMES $((LISTEN_PID - $$))\" >&3; exec sleep 60'\nstop_timeout: 2s\n", listen))
	d := startDaemon(t, apps, "-state", state)
	c, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "1 connection 0\n" {
		t.Fatalf("got %q, %v; want LISTEN_FDS 1, LISTEN_FDNAMES connection and LISTEN_PID the program's pid", line, err)
	}
	var sleeper int
	testutil.Eventually(t, 10*time.Second, func() bool {
		pids := childrenOf(d.cmd.Process.Pid, "sleep")
		if len(pids) == 1 {
			sleeper = pids[0]
		}
		return sleeper != 0
	}, "no sleep program under the daemon")
	// Status: its programs are its instances, one connection each.
	a := statusOf(t, state, "env")
	if a["handoff"] != "inetd" || a["state"] != "ready" || a["connections"] != float64(1) || a["pid"] != float64(sleeper) {
		t.Errorf("status: handoff %v, state %v, connections %v, pid %v; want inetd, ready, 1, %d",
			a["handoff"], a["state"], a["connections"], a["pid"], sleeper)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	if testutil.ProcessAlive(sleeper) {
		t.Fatalf("the inetd program %d outlived the daemon", sleeper)
	}
}
