package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// reloadScenario measures hot reload with -reload-others other apps
// configured (each with a listener of its own): the time from writing a new
// app file to its listener accepting and to a first answer through it (the
// app's cold start included), and from an edit of a running app's command
// to the restarted program answering. The debounce is included. Each new
// file is removed again before the next, so the number of apps stays put.
func (b *bench) reloadScenario(ctx context.Context) error {
	dir := filepath.Join(b.work, "reload")
	apps := filepath.Join(dir, "apps.d")
	if err := os.MkdirAll(apps, 0o755); err != nil {
		return err
	}
	n := b.cfg.reloadOthers
	ports, err := freePorts(n)
	if err != nil {
		return err
	}
	backend := func(extra ...string) []string {
		return append([]string{b.backendBin, "-backend", "127.0.0.1:${PORT}"}, extra...)
	}
	for i, p := range ports {
		a := app{name: fmt.Sprintf("other%05d", i), listen: "127.0.0.1:" + strconv.Itoa(p), command: backend()}
		if err := a.write(apps); err != nil {
			return err
		}
	}
	target := app{name: "target", listen: freeAddr(), extra: "mode: persistent\n",
		command: backend("-pidfile", filepath.Join(dir, "target-0.pid"))}
	if err := target.write(apps); err != nil {
		return err
	}
	d, _, err := startDaemon(b.dynapmBin, dir, 60*time.Second)
	if err != nil {
		return err
	}
	defer d.stop()
	if _, err := firstByte(target.listen, "PING\n", 30*time.Second); err != nil {
		return fmt.Errorf("the persistent target app never answered: %w", err)
	}

	const limit = 30 * time.Second
	var accept, served, restart []time.Duration
	for i := range b.cfg.reloads {
		a := app{name: fmt.Sprintf("new%03d", i), listen: freeAddr(), command: backend()}
		start := time.Now()
		if err := a.write(apps); err != nil {
			return err
		}
		// A connect succeeds once the listener is bound: the kernel
		// completes the handshake before DynaPM accepts.
		if err := pollUntil(limit, func() bool { return dialable(a.listen) }); err != nil {
			return fmt.Errorf("new app %s never listened: %w", a.name, err)
		}
		accept = append(accept, time.Since(start))
		if _, err := firstByteFrom(start, a.listen, "PING\n", limit); err != nil {
			return fmt.Errorf("new app %s never answered: %w", a.name, err)
		}
		served = append(served, time.Since(start))
		if err := os.Remove(filepath.Join(apps, a.name+".yaml")); err != nil {
			return err
		}
		if err := pollUntil(limit, func() bool { return !dialable(a.listen) }); err != nil {
			return fmt.Errorf("removed app %s still listening: %w", a.name, err)
		}
	}
	for i := range b.cfg.reloads {
		// A new -pidfile argument is a new command: the app restarts, and
		// the new program writes that file once it listens.
		pidfile := filepath.Join(dir, fmt.Sprintf("target-%d.pid", i+1))
		target.command = backend("-pidfile", pidfile)
		start := time.Now()
		if err := target.write(apps); err != nil {
			return err
		}
		if err := pollUntil(limit, func() bool { _, err := os.Stat(pidfile); return err == nil }); err != nil {
			return fmt.Errorf("edited app never restarted: %w", err)
		}
		if _, err := firstByteFrom(start, target.listen, "PING\n", limit); err != nil {
			return fmt.Errorf("restarted app never answered: %w", err)
		}
		restart = append(restart, time.Since(start))
	}
	progress("reload with %d other apps: new file to accepting %s, to first answer %s; command edit to restarted answer %s (medians)",
		n, medianDur(accept).Round(time.Microsecond), medianDur(served).Round(time.Microsecond), medianDur(restart).Round(time.Microsecond))
	scen := fmt.Sprintf("hot reload: %d other app files", n)
	med := fmt.Sprintf("median of %d (max)", b.cfg.reloads)
	b.rep.facts = append(b.rep.facts,
		factRow{scen, "new file written to its listener accepting, " + med, ms(medianDur(accept)) + " (" + ms(maxDur(accept)) + ")", "< 250 ms"},
		factRow{scen, "new file written to the first answer through it (cold start included), " + med, ms(medianDur(served)) + " (" + ms(maxDur(served)) + ")", ""},
		factRow{scen, "command edited to the restarted program answering, " + med, ms(medianDur(restart)) + " (" + ms(maxDur(restart)) + ")", "< 250 ms"})
	return nil
}

// pollUntil polls cond every millisecond until it holds or limit passes.
func pollUntil(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// dialable reports whether a TCP connect to addr succeeds.
func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func maxDur(xs []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
