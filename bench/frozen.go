package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// frozenApp is the Go bench backend with idle_action: freeze: idle for
// 50 ms, it is frozen rather than stopped.
func (b *bench) frozenApp(dir string) app {
	b.frozenPid = filepath.Join(dir, "frozen.pid")
	return app{name: "frozen-go", listen: freeAddr(),
		command: []string{b.backendBin, "-backend", "127.0.0.1:${PORT}", "-pidfile", b.frozenPid},
		extra:   "idle_timeout: 50ms\nidle_action: freeze\n"}
}

// frozenScenario measures a wake from frozen: per round, a connection to
// the frozen app (connect to first byte: the thaw and the splice), a warm
// connection right after it, and a bare start of the same program (spawn
// to first byte, the cold start a stop would cost). Then it measures the
// CPU the frozen program uses while it stays frozen for -frozen-idle.
func (b *bench) frozenScenario(ctx context.Context) error {
	a := b.frozen
	p := coldProgram{label: "Go (bench backend)", app: a, request: "PING\n"}
	// Started alone, the program must not write the app's pidfile.
	bare := p
	bare.app.command = []string{b.backendBin, "-backend", "127.0.0.1:${PORT}"}
	// The first connection starts it; every later round finds it frozen.
	if _, err := firstByte(a.listen, p.request, 30*time.Second); err != nil {
		return fmt.Errorf("starting frozen-go: %w", err)
	}
	pid, err := readPid(b.frozenPid)
	if err != nil {
		return err
	}
	daemon := b.daemon.pid()
	var thawed, warm, cold []time.Duration
	var cswThawed, cswWarm []int64 // the daemon's and the program's, per connection
	for i := 1; i <= b.cfg.wakes; i++ {
		// Frozen as the kernel reports it: a connection right after the
		// freeze began would also time the freeze settling.
		if err := pollUntil(20*time.Second, func() bool {
			return b.daemon.count("app frozen", a.name) >= i && testutil.Frozen(pid)
		}); err != nil {
			return fmt.Errorf("frozen-go not frozen (round %d): %w", i, err)
		}
		u0 := usage(daemon).csw + usage(pid).csw
		t, err := firstByte(a.listen, p.request, 30*time.Second)
		if err != nil {
			return fmt.Errorf("waking frozen-go: %w", err)
		}
		u1 := usage(daemon).csw + usage(pid).csw
		w, err := firstByte(a.listen, p.request, 30*time.Second)
		if err != nil {
			return fmt.Errorf("frozen-go warm: %w", err)
		}
		u2 := usage(daemon).csw + usage(pid).csw
		c, err := bareStart(bare, b.work)
		if err != nil {
			return fmt.Errorf("frozen-go's program alone: %w", err)
		}
		thawed, warm, cold = append(thawed, t), append(warm, w), append(cold, c)
		cswThawed, cswWarm = append(cswThawed, u1-u0), append(cswWarm, u2-u1)
	}
	added := medianDiff(thawed, warm)
	ratio := float64(medianDur(cold)) / float64(max(medianDur(thawed), time.Microsecond))
	progress("frozen: thawed %s  warm %s  added %s (%s to %s)  cold start %s (%.0fx)  context switches thawed %d warm %d",
		medianDur(thawed).Round(time.Microsecond), medianDur(warm).Round(time.Microsecond), added.Round(time.Microsecond),
		diffQuartile(thawed, warm, 1).Round(time.Microsecond), diffQuartile(thawed, warm, 3).Round(time.Microsecond),
		medianDur(cold).Round(time.Microsecond), ratio, medianInt(cswThawed), medianInt(cswWarm))
	scen := "wake from frozen: Go (bench backend)"
	b.rep.facts = append(b.rep.facts,
		factRow{scen, "frozen, connect to first byte (median)", ms(medianDur(thawed)), ""},
		factRow{scen, "warm, connect to first byte (median)", ms(medianDur(warm)), ""},
		factRow{scen, fmt.Sprintf("added over warm, median of %d paired differences", b.cfg.wakes), ms(added), "< 0.5 ms"},
		factRow{scen, "added over warm, quartiles of the paired differences",
			ms(diffQuartile(thawed, warm, 1)) + " to " + ms(diffQuartile(thawed, warm, 3)), ""},
		factRow{scen, "context switches of the daemon and the program per connection (median), frozen / warm",
			fmt.Sprintf("%d / %d", medianInt(cswThawed), medianInt(cswWarm)), ""},
		factRow{scen, "cold start of the same program, spawn to first byte (median)", ms(medianDur(cold)), ""},
		factRow{scen, "cold start / wake from frozen", fmt.Sprintf("%.0fx", ratio), ">= 10x"})

	// Frozen and left alone: its CPU time must not move.
	if err := pollUntil(20*time.Second, func() bool { return b.daemon.count("app frozen", a.name) > b.cfg.wakes }); err != nil {
		return fmt.Errorf("frozen-go not frozen at the end: %w", err)
	}
	before, err := cpuTime(pid)
	if err != nil {
		return err
	}
	select {
	case <-time.After(b.cfg.frozenIdle):
	case <-ctx.Done():
		return ctx.Err()
	}
	after, err := cpuTime(pid)
	if err != nil {
		return err
	}
	progress("frozen: CPU over %s frozen: %s", b.cfg.frozenIdle, after-before)
	b.rep.facts = append(b.rep.facts,
		factRow{scen, fmt.Sprintf("program's CPU time over %s frozen", b.cfg.frozenIdle), ms(after - before), "0"})
	return nil
}

// readPid reads the pid a program wrote to path.
func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading a pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("pidfile %s: %w", path, err)
	}
	return pid, nil
}
