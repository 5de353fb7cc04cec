package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
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
	var thawed, warm, cold []time.Duration
	for i := 1; i <= b.cfg.wakes; i++ {
		if err := pollUntil(20*time.Second, func() bool { return b.daemon.count("app frozen", a.name) >= i }); err != nil {
			return fmt.Errorf("frozen-go not frozen (round %d): %w", i, err)
		}
		t, err := firstByte(a.listen, p.request, 30*time.Second)
		if err != nil {
			return fmt.Errorf("waking frozen-go: %w", err)
		}
		w, err := firstByte(a.listen, p.request, 30*time.Second)
		if err != nil {
			return fmt.Errorf("frozen-go warm: %w", err)
		}
		c, err := bareStart(bare, b.work)
		if err != nil {
			return fmt.Errorf("frozen-go's program alone: %w", err)
		}
		thawed, warm, cold = append(thawed, t), append(warm, w), append(cold, c)
	}
	added := medianDiff(thawed, warm)
	ratio := float64(medianDur(cold)) / float64(max(medianDur(thawed), time.Microsecond))
	progress("frozen: thawed %s  warm %s  added %s  cold start %s (%.0fx)", medianDur(thawed).Round(time.Microsecond),
		medianDur(warm).Round(time.Microsecond), added.Round(time.Microsecond), medianDur(cold).Round(time.Microsecond), ratio)
	scen := "wake from frozen: Go (bench backend)"
	b.rep.facts = append(b.rep.facts,
		factRow{scen, "frozen, connect to first byte (median)", ms(medianDur(thawed)), ""},
		factRow{scen, "warm, connect to first byte (median)", ms(medianDur(warm)), ""},
		factRow{scen, fmt.Sprintf("added over warm, median of %d paired differences", b.cfg.wakes), ms(added), "< 0.5 ms"},
		factRow{scen, "cold start of the same program, spawn to first byte (median)", ms(medianDur(cold)), ""},
		factRow{scen, "cold start / wake from frozen", fmt.Sprintf("%.0fx", ratio), ">= 10x"})

	// Frozen and left alone: its CPU time must not move.
	if err := pollUntil(20*time.Second, func() bool { return b.daemon.count("app frozen", a.name) > b.cfg.wakes }); err != nil {
		return fmt.Errorf("frozen-go not frozen at the end: %w", err)
	}
	data, err := os.ReadFile(b.frozenPid)
	if err != nil {
		return fmt.Errorf("frozen-go's pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("frozen-go's pidfile: %w", err)
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
