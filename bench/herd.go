package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// herdScenario opens -herd connections at once to the stopped herd app and
// checks that all are served by one spawn, and how long after the program
// was ready the last one got its answer.
func (b *bench) herdScenario(ctx context.Context) error {
	if err := b.daemon.waitStopped(b.herdApp.name, 20*time.Second); err != nil {
		return err
	}
	_ = os.Remove(b.herdLog)
	n := b.cfg.herd
	start, last, served, errs := herd(b.herdApp.listen, n)
	spawns, ready, err := readSpawns(b.herdLog)
	if err != nil {
		return err
	}
	// The floor: the same herd straight to a running backend of the same
	// program (the persistent bulk backend), no proxy, no wake.
	dStart, dLast, dServed, dErrs := herd(b.bulkAddr[direct], n)
	progress("herd: %d/%d served, %d errors, %d spawns, last served %s after the program listened, %s after the first connect; direct to a running backend: %d served in %s",
		served, n, len(errs), spawns, last.Sub(ready).Round(time.Microsecond), last.Sub(start).Round(time.Microsecond),
		dServed, dLast.Sub(dStart).Round(time.Microsecond))
	scen := fmt.Sprintf("herd: %d simultaneous first connections", n)
	b.rep.herd = herdResult{last: last.Sub(ready), floor: dLast.Sub(dStart)}
	b.rep.facts = append(b.rep.facts,
		factRow{scen, "served", fmt.Sprintf("%d of %d", served, n), "all"},
		factRow{scen, "spawns", strconv.Itoa(spawns), "1"},
		factRow{scen, "last served, after the program began listening", ms(last.Sub(ready)), ""},
		factRow{scen, "last served, after the first connect", ms(last.Sub(start)), ""},
		factRow{scen, "floor: the same herd straight to the running program, first connect to last served", ms(dLast.Sub(dStart)), ""},
		factRow{scen, "last served after listening / floor", fmt.Sprintf("%.2f", b.rep.herd.ratio()), fmt.Sprintf("<= %.1f", herdGoal)})
	if len(errs) > 0 {
		b.rep.note("herd: %d connections failed, e.g. %v", len(errs), errs[0])
	}
	if len(dErrs) > 0 {
		b.rep.note("herd floor: %d direct connections failed, e.g. %v", len(dErrs), dErrs[0])
	}
	return nil
}

// herd opens n connections to addr at once (each asks PING and waits for
// PONG) and returns when the first connect began, when the last answer
// arrived, how many were served and the failures.
func herd(addr string, n int) (start, last time.Time, served int, errs []error) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	gate := make(chan struct{})
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			at, err := herdClient(addr, deadline)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			served++
			if at.After(last) {
				last = at
			}
		}()
	}
	start = time.Now()
	close(gate)
	wg.Wait()
	return start, last, served, errs
}

// herdClient connects, asks PING and returns when PONG arrived.
func herdClient(addr string, deadline time.Time) (time.Time, error) {
	c, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := io.WriteString(c, "PING\n"); err != nil {
		return time.Time{}, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return time.Time{}, err
	}
	if line != "PONG\n" {
		return time.Time{}, fmt.Errorf("answer %q", line)
	}
	return time.Now(), nil
}

// readSpawns reads the backend's spawn log: how many times it started and
// when the first one began listening.
func readSpawns(path string) (int, time.Time, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("reading spawn log: %w", err)
	}
	lines := strings.Fields(strings.ReplaceAll(string(data), "\n", " "))
	if len(lines) < 2 {
		return 0, time.Time{}, fmt.Errorf("empty spawn log")
	}
	ns, _ := strconv.ParseInt(lines[1], 10, 64)
	return len(lines) / 2, time.Unix(0, ns), nil
}

// herdGoal bounds the herd's last served, counted from the moment the
// program listened, as a multiple of the floor: the same herd straight to
// the running program in the same run. On two CPUs that floor alone is
// 95–200 ms, so an absolute bound measured the machine, not DynaPM.
const herdGoal = 1.3

// herdResult is the herd's timing against its floor.
type herdResult struct {
	last, floor time.Duration // zero: not measured
}

func (h herdResult) ratio() float64 {
	if h.floor <= 0 {
		return math.NaN()
	}
	return float64(h.last) / float64(h.floor)
}
