package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// The hand-off scenario's targets: the program alone, and the same
// program behind DynaPM with handoff: socket and with handoff: proxy.
const (
	socketT = "socket"
	proxyT  = "proxy"
)

var handoffTargets = []string{direct, socketT, proxyT}

const sectionHandoff = "Socket hand-off"

// handoffApp is the tiny HTTP backend with handoff: socket: DynaPM passes
// it the listening socket (LISTEN_FDS) and is off the data path. Its
// handoff: proxy twin is the warm path's http app, the same program.
func (b *bench) handoffApp() app {
	b.handoffAddr = freeAddr()
	return app{name: "http-socket", listen: b.handoffAddr,
		command: []string{b.backendBin, "-backend-http", "127.0.0.1:${PORT}"},
		extra:   "mode: persistent\nhandoff: socket\n"}
}

// handoffScenario runs the warm path's wrk loads against the HTTP backend
// alone, handed its socket by DynaPM, and proxied by DynaPM, alternating;
// DynaPM's CPU is charged to both of its targets. Alone is a copy the
// bench starts itself, with no DynaPM at all, serving only its own
// target as the socket app's program does.
func (b *bench) handoffScenario(ctx context.Context) error {
	if !b.hasWrk {
		return nil
	}
	alone := freeAddr()
	cmd := exec.Command(b.backendBin, "-backend-http", alone)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the HTTP backend alone: %w", err)
	}
	defer terminate(cmd, 10*time.Second)
	if err := waitDial(alone, 30*time.Second); err != nil {
		return fmt.Errorf("the HTTP backend alone did not listen on %s: %w", alone, err)
	}
	addr := map[string]string{direct: alone, socketT: b.handoffAddr, proxyT: b.httpAddr[dynapm]}
	for _, t := range handoffTargets {
		if _, err := firstByte(addr[t], httpRequest, 30*time.Second); err != nil {
			return fmt.Errorf("no answer through %s at %s: %w", t, addr[t], err)
		}
	}
	samples, err := b.wrkRounds(ctx, warmLoads, handoffTargets, func(t string) (string, []int) {
		if t == direct {
			return addr[t], nil
		}
		return addr[t], []int{b.daemon.pid()}
	})
	if err != nil {
		return err
	}
	rows := func(name string) scenarioRows {
		return scenarioRows{rep: b.rep, scenario: "handoff, " + name, samples: samples[name], cols: handoffTargets, section: sectionHandoff}
	}
	rate := func(s sample) float64 { return s.value }
	ka := rows("keep-alive")
	ka.add(warmRow{metric: "requests", unit: "req/s", goal: "socket/direct >= 0.97", key: keyHandoffKA}, rate, true)
	ka.cpu("request", "µs", 1e6, "", "")
	nc := rows("new connections")
	nc.add(warmRow{metric: "connections", unit: "conn/s", goal: "socket/direct >= 0.97", key: keyHandoffNC}, rate, true)
	nc.cpu("connection", "µs", 1e6, "", "")
	lat := rows("latency")
	lat.add(warmRow{metric: "p50", unit: "µs", lowerBetter: true}, func(s sample) float64 { return s.p50 }, true)
	lat.overDirect(warmRow{metric: "p50 added over direct", unit: "µs", lowerBetter: true}, func(s sample) float64 { return s.p50 })
	return nil
}
