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

// scaleScenario starts a daemon with one app and one with -scale-apps apps
// (each its own listen port, all on demand), and reports ready time, RSS,
// CPU over an idle period and the wake time of one app in each.
func (b *bench) scaleScenario(ctx context.Context) error {
	type result struct {
		ready    time.Duration
		rss      int64
		idleCPU  time.Duration
		rssAfter int64
		wake     time.Duration
	}
	measure := func(n int, idle time.Duration) (result, error) {
		var r result
		dir := filepath.Join(b.work, "scale-"+strconv.Itoa(n))
		apps := filepath.Join(dir, "apps.d")
		if err := os.MkdirAll(apps, 0o755); err != nil {
			return r, err
		}
		ports, err := freePorts(n)
		if err != nil {
			return r, err
		}
		first := ""
		for i, p := range ports {
			a := app{name: fmt.Sprintf("app%05d", i), listen: "127.0.0.1:" + strconv.Itoa(p),
				command: []string{b.backendBin, "-backend", "127.0.0.1:${PORT}"}, extra: "idle_timeout: 50ms\n"}
			if i == 0 {
				first = a.listen
			}
			if err := a.write(apps); err != nil {
				return r, err
			}
		}
		d, ready, err := startDaemon(b.dynapmBin, dir, 60*time.Second)
		if err != nil {
			return r, err
		}
		defer d.stop()
		r.ready = ready
		r.rss = rssBytes(d.pid())
		if idle > 0 {
			before, _ := cpuTime(d.pid())
			time.Sleep(idle)
			after, _ := cpuTime(d.pid())
			r.idleCPU = after - before
			r.rssAfter = rssBytes(d.pid())
		}
		var wakes []time.Duration
		for i := 0; i < b.cfg.scaleWake; i++ {
			if err := d.waitStopped("app00000", 20*time.Second); err != nil {
				return r, err
			}
			w, err := firstByte(first, "PING\n", 30*time.Second)
			if err != nil {
				return r, fmt.Errorf("waking an app among %d: %w", n, err)
			}
			wakes = append(wakes, w)
		}
		r.wake = medianDur(wakes)
		return r, d.waitStopped("app00000", 20*time.Second)
	}

	// One app first, as the reference, then many.
	one, err := measure(1, 0)
	if err != nil {
		return fmt.Errorf("one app: %w", err)
	}
	n := b.cfg.scaleApps
	many, err := measure(n, b.cfg.idle)
	if err != nil {
		return fmt.Errorf("%d apps: %w", n, err)
	}
	progress("scale: %d apps ready in %s, RSS %.1f MiB (%.1f after idle), CPU %s over %s idle; wake %s (one app: %s, ready %s)",
		n, many.ready.Round(time.Millisecond), mib(many.rss), mib(many.rssAfter), many.idleCPU, b.cfg.idle,
		many.wake.Round(time.Microsecond), one.wake.Round(time.Microsecond), one.ready.Round(time.Millisecond))
	scen := fmt.Sprintf("scale: %d app files", n)
	b.rep.facts = append(b.rep.facts,
		factRow{scen, "daemon exec to ready", ms(many.ready), "< 2 s"},
		factRow{scen, "daemon exec to ready, one app", ms(one.ready), ""},
		factRow{scen, "RSS when ready / after the idle period", fmt.Sprintf("%.1f / %.1f MiB", mib(many.rss), mib(many.rssAfter)), "< 100 MiB"},
		factRow{scen, "RSS with one app", fmt.Sprintf("%.1f MiB", mib(one.rss)), ""})
	if b.cfg.idle > 0 {
		perMin := time.Duration(float64(many.idleCPU) * float64(time.Minute) / float64(b.cfg.idle))
		b.rep.facts = append(b.rep.facts, factRow{scen, fmt.Sprintf("CPU time over %s idle (scaled to 60 s; 10 ms resolution)", b.cfg.idle),
			fmt.Sprintf("%s (%.2f s per 60 s)", many.idleCPU, perMin.Seconds()), "< 0.1 s per 60 s"})
	}
	b.rep.facts = append(b.rep.facts,
		factRow{scen, fmt.Sprintf("wake, connect to first byte, median of %d", b.cfg.scaleWake), ms(many.wake), "as with one app"},
		factRow{scen, "the same with one app configured", ms(one.wake), ""})
	return nil
}

// freePorts finds n loopback ports that are free now, below the ephemeral
// range so that other programs' outgoing connections rarely take them.
func freePorts(n int) ([]int, error) {
	var ports []int
	for p := 12000; p < 32768 && len(ports) < n; p++ {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("only %d free ports in 12000-32767, need %d", len(ports), n)
	}
	return ports, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
