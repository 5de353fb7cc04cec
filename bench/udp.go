package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// nginxT is the UDP scenario's third target: nginx's stream module.
const nginxT = "nginx"

// udpTargets are the UDP table's columns, the baseline first.
var udpTargets = []string{direct, dynapm, nginxT}

const sectionUDP = "UDP"

// udpApps returns the UDP scenario's apps: the echo backend, persistent,
// behind a UDP listen address (its direct address is the echo's own), and
// the same program on demand for the cold wake.
func (b *bench) udpApps() []app {
	b.udpAddr = map[string]string{direct: freeUDPAddr(), dynapm: freeUDPAddr()}
	echo := app{name: "udp-echo", listen: b.udpAddr[dynapm] + "/udp", upstream: b.udpAddr[direct] + "/udp",
		command: []string{b.backendBin, "-backend-udp", b.udpAddr[direct]}, extra: "mode: persistent\n"}
	b.udpCold = coldProgram{label: "UDP echo (Go bench backend)", udp: true,
		app: app{name: "cold-udp", listen: freeUDPAddr() + "/udp", command: []string{b.backendBin, "-backend-udp", "127.0.0.1:${PORT}"},
			// The flow ends soon after the reply, and the app stops soon
			// after its last flow, so that every wake is a cold one.
			extra: "idle_timeout: 50ms\nudp_flow_timeout: 50ms\n"}}
	return []app{echo, b.udpCold.app}
}

// udpScenario measures datagrams per second (several clients, several
// datagrams in flight each) and the round trip one at a time, direct,
// through DynaPM and through nginx's stream module, alternating; then the
// cold wake of a UDP app against its program's bare start.
func (b *bench) udpScenario(ctx context.Context) error {
	ts := []string{direct, dynapm}
	if lookTool("nginx") != "" && lookTool("ngx_stream_module") != "" {
		dir := filepath.Join(b.work, "nginx")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		b.udpAddr[nginxT] = freeUDPAddr()
		n, err := startNginx(dir, b.daemonLoops(), [][2]string{{b.udpAddr[nginxT], b.udpAddr[direct]}})
		if err != nil {
			return err
		}
		defer n.stop()
		b.nginx = n
		b.rep.nginx = n.config
		ts = udpTargets
	}
	for _, t := range ts {
		if err := pollUntil(30*time.Second, func() bool { _, err := udpFirstReply(b.udpAddr[t], 100*time.Millisecond); return err == nil }); err != nil {
			return fmt.Errorf("no echo through %s at %s: %w", t, b.udpAddr[t], err)
		}
	}
	loads := []struct {
		name string
		load udpLoad
	}{{"datagrams", udpThroughput}, {"round trip", udpOneAtATime}}
	names := make([]string, len(loads))
	for i, l := range loads {
		names[i] = l.name
	}
	samples, err := b.rounds(names, ts, func(i int, t string, rep int) (sample, error) {
		l := loads[i]
		m := startMeter(b.udpPids(t)...)
		r, err := runUDP(b.udpAddr[t], l.load, b.cfg.dur)
		if err != nil {
			return sample{}, fmt.Errorf("udp %s through %s: %w", l.name, t, err)
		}
		s := sample{value: r.rate(), ops: float64(r.replies), errors: float64(r.lost)}
		s.p50, s.p99 = micros(percentile(r.rtts, 50)), micros(percentile(r.rtts, 99))
		s.charge(m.stop())
		progress("udp %-10s %-7s rep %d: %8.0f datagrams/s  p50 %6.0fµs  cpu %5.1fµs/op  machine %5.1fµs/op  lost %d",
			l.name, t, rep+1, s.value, s.p50, s.cpu/s.ops*1e6, s.machine/s.ops*1e6, r.lost)
		return s, nil
	})
	if err != nil {
		return err
	}
	rows := func(name string) scenarioRows {
		return scenarioRows{rep: b.rep, scenario: "udp " + name, samples: samples[name], cols: udpTargets, section: sectionUDP}
	}
	us := func(f func(sample) float64) func(sample) float64 {
		return func(s sample) float64 { return f(s) / s.ops * 1e6 }
	}
	rate := rows("datagrams")
	rate.scenario = "udp, " + udpThroughput.String()
	rate.add(warmRow{metric: "datagrams echoed", unit: "1/s", goal: "dynapm/nginx >= 1", key: keyUDPRate},
		func(s sample) float64 { return s.value }, true)
	rate.add(warmRow{metric: "proxy CPU per datagram", unit: "µs", lowerBetter: true, goal: "dynapm <= nginx", key: keyUDPCPU},
		us(func(s sample) float64 { return s.cpu }), false)
	rate.add(warmRow{metric: "machine CPU per datagram", unit: "µs", lowerBetter: true},
		us(func(s sample) float64 { return s.machine }), true)
	rate.overDirect(warmRow{metric: "machine CPU per datagram over direct's", unit: "µs", lowerBetter: true},
		us(func(s sample) float64 { return s.machine }))
	rate.add(warmRow{metric: "datagrams lost per 1000 sent", lowerBetter: true, noRatios: true},
		func(s sample) float64 { return s.errors / (s.ops + s.errors) * 1000 }, true)

	rt := rows("round trip")
	rt.scenario = "udp, one at a time"
	rt.add(warmRow{metric: "round trip p50", unit: "µs", lowerBetter: true}, func(s sample) float64 { return s.p50 }, true)
	rt.add(warmRow{metric: "round trip p99", unit: "µs", lowerBetter: true}, func(s sample) float64 { return s.p99 }, true)
	rt.overDirect(warmRow{metric: "p50 added over direct", unit: "µs", lowerBetter: true},
		func(s sample) float64 { return s.p50 })
	rt.add(warmRow{metric: "proxy CPU per round trip", unit: "µs", lowerBetter: true},
		us(func(s sample) float64 { return s.cpu }), false)

	if err := b.coldWakes(b.udpCold); err != nil {
		return err
	}
	return b.daemon.waitStopped(b.udpCold.app.name, 20*time.Second)
}

// udpPids are the processes a UDP target's load is charged to.
func (b *bench) udpPids(t string) []int {
	switch t {
	case dynapm:
		return []int{b.daemon.pid()}
	case nginxT:
		return b.nginx.pids()
	}
	return nil
}

// daemonLoops is how many event loops the daemon runs when its settings
// leave the choice to it, as the bench's do: one per CPU Go sees, at most
// 8 (run.go, eventLoops).
func (b *bench) daemonLoops() int { return min(runtime.GOMAXPROCS(0), 8) }

func freeUDPAddr() string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// nginxCommand is the nginx command line for the report.
func nginxCommand() string {
	return "nginx -p DIR -e DIR/nginx.log -c DIR/nginx.conf   # nginx.conf generated, below"
}
