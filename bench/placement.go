package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// placement puts the bulk download's three processes on CPUs: an index
// into the two CPUs used, or -1 for wherever the scheduler puts it.
type placement struct {
	name                   string
	client, proxy, backend int
}

// placements are every way of putting client, proxy and backend on two
// CPUs, up to swapping the CPUs, and the scheduler's own choice. Direct
// runs with the same client and backend placement.
var placements = []placement{
	{"scheduler's choice", -1, -1, -1},
	{"all on one CPU", 0, 0, 0},
	{"client | proxy + backend", 0, 1, 1},
	{"client + backend | proxy", 0, 1, 0},
	{"client + proxy | backend", 0, 0, 1},
}

// placementRow is one placement's medians and ratios.
type placementRow struct {
	name           string
	direct, dynapm float64 // MB/s
	ratio, lo, hi  float64 // dynapm/direct per repetition: median, range
	cpu, wait      [3]float64
	machine, mcsw  [2]float64 // direct, dynapm
	migrations     [3]float64
}

// schedUsage is a process's scheduler accounting, summed over its
// threads: time on a CPU, time runnable but waiting for one, and moves
// between CPUs.
type schedUsage struct {
	cpu, wait  time.Duration
	migrations int64
}

func (a schedUsage) sub(b schedUsage) schedUsage {
	return schedUsage{cpu: a.cpu - b.cpu, wait: a.wait - b.wait, migrations: a.migrations - b.migrations}
}

// schedOf reads /proc/PID/task/*/schedstat ("run ns, wait ns, slices")
// and the migrations of /proc/PID/task/*/sched.
func schedOf(pid int) schedUsage {
	var u schedUsage
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, t := range tasks {
		if data, err := os.ReadFile(t + "/schedstat"); err == nil {
			if f := strings.Fields(string(data)); len(f) >= 2 {
				run, _ := strconv.ParseInt(f[0], 10, 64)
				wait, _ := strconv.ParseInt(f[1], 10, 64)
				u.cpu += time.Duration(run)
				u.wait += time.Duration(wait)
			}
		}
		if data, err := os.ReadFile(t + "/sched"); err == nil {
			u.migrations += schedField(data, "se.nr_migrations")
		}
	}
	return u
}

// schedField is the number after "key : " in /proc/PID/sched.
func schedField(data []byte, key string) int64 {
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == key {
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(n)
		}
	}
	return 0
}

// pin restricts every thread of pid to set. Threads started meanwhile
// inherit their creator's set, so a second pass catches those created by
// a thread not yet pinned.
func pin(pid int, set *unix.CPUSet) error {
	for range 3 {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		changed := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var cur unix.CPUSet
			if unix.SchedGetaffinity(tid, &cur) == nil && cur == *set {
				continue
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pinning thread %d of %d: %w", tid, pid, err)
			}
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return nil
}

// bulkClient is the placement scenario's client, a process of its own
// so that it can be pinned: it pins itself to cpu (-1: not), downloads n
// bytes from addr and prints the rate and its own CPU and wait time.
func bulkClient(addr string, n int64, cpu int) error {
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := pin(os.Getpid(), &set); err != nil {
			return err
		}
	}
	rate, err := download(addr, n)
	if err != nil {
		return err
	}
	u := schedOf(os.Getpid())
	fmt.Printf("%f %d %d %d\n", rate, u.cpu, u.wait, u.migrations)
	return nil
}

// placementScenario downloads through one connection, direct and through
// dynapm alternately, with the client, the proxy and the backend pinned to
// two CPUs in every way, to see how much of the bulk share of direct is
// where the three processes run.
func (b *bench) placementScenario(ctx context.Context) error {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return err
	}
	var cpus []int
	for i := 0; i < 1024 && len(cpus) < 2; i++ {
		if all.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		b.rep.note("placement: fewer than two CPUs to run on, skipped.")
		return nil
	}
	data, err := os.ReadFile(b.bulkPid)
	if err != nil {
		return fmt.Errorf("the bulk backend's pid: %w", err)
	}
	backendPid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("the bulk backend's pidfile %s: %w", b.bulkPid, err)
	}
	proxyPid := b.daemon.pid()
	setOf := func(i int) *unix.CPUSet {
		if i < 0 {
			return &all
		}
		var s unix.CPUSet
		s.Set(cpus[i])
		return &s
	}
	unpin := func() {
		_ = pin(proxyPid, &all)
		_ = pin(backendPid, &all)
	}
	defer unpin()
	size := min(b.cfg.bulk, 1<<30)
	gb := float64(size) / 1e9
	for _, p := range placements {
		type run struct {
			rate    float64
			procs   [3]schedUsage // client, proxy, backend
			machine cost
		}
		runs := map[string][]run{}
		for rep := 0; rep < b.cfg.runs; rep++ {
			for _, t := range order([]string{direct, dynapm}, rep) {
				if err := pin(backendPid, setOf(p.backend)); err != nil {
					return err
				}
				if err := pin(proxyPid, setOf(p.proxy)); err != nil {
					return err
				}
				m := startMeter(b.proxyPid(t))
				pb, bb := schedOf(proxyPid), schedOf(backendPid)
				cpu := -1
				if p.client >= 0 {
					cpu = cpus[p.client]
				}
				out, err := exec.CommandContext(ctx, b.backendBin, "-bulk-client", b.bulkAddr[t],
					"-bulk-bytes", strconv.FormatInt(size, 10), "-cpu", strconv.Itoa(cpu)).Output()
				if err != nil {
					return fmt.Errorf("placement %s, download through %s: %w", p.name, t, err)
				}
				var r run
				r.machine = m.stop()
				r.procs[1], r.procs[2] = schedOf(proxyPid).sub(pb), schedOf(backendPid).sub(bb)
				var cpuNs, waitNs int64
				if _, err := fmt.Sscan(string(out), &r.rate, &cpuNs, &waitNs, &r.procs[0].migrations); err != nil {
					return fmt.Errorf("placement %s: the client said %q: %w", p.name, out, err)
				}
				r.procs[0].cpu, r.procs[0].wait = time.Duration(cpuNs), time.Duration(waitNs)
				if t == direct {
					r.procs[1] = schedUsage{}
				}
				progress("placement %-26s %-7s rep %d: %6.0f MB/s  CPU s/GB client %.2f proxy %.2f backend %.2f  wait s/GB %.2f %.2f %.2f",
					p.name, t, rep+1, r.rate/1e6,
					r.procs[0].cpu.Seconds()/gb, r.procs[1].cpu.Seconds()/gb, r.procs[2].cpu.Seconds()/gb,
					r.procs[0].wait.Seconds()/gb, r.procs[1].wait.Seconds()/gb, r.procs[2].wait.Seconds()/gb)
				runs[t] = append(runs[t], r)
			}
		}
		unpin()
		row := placementRow{name: p.name}
		var ratios []float64
		for i := range runs[dynapm] {
			ratios = append(ratios, runs[dynapm][i].rate/runs[direct][i].rate)
		}
		rates := func(t string) []float64 {
			var v []float64
			for _, r := range runs[t] {
				v = append(v, r.rate/1e6)
			}
			return v
		}
		row.direct, row.dynapm = median(rates(direct)), median(rates(dynapm))
		row.ratio, row.lo, row.hi = median(ratios), minOf(ratios), maxOf(ratios)
		for k := range 3 {
			var c, w, mig []float64
			for _, r := range runs[dynapm] {
				c = append(c, r.procs[k].cpu.Seconds()/gb)
				w = append(w, r.procs[k].wait.Seconds()/gb)
				mig = append(mig, float64(r.procs[k].migrations)/(gb*1e3))
			}
			row.cpu[k], row.wait[k], row.migrations[k] = median(c), median(w), median(mig)
		}
		for i, t := range []string{direct, dynapm} {
			var mc, cs []float64
			for _, r := range runs[t] {
				mc = append(mc, r.machine.machine.Seconds()/gb)
				cs = append(cs, float64(r.machine.mcsw)/(gb*1e3))
			}
			row.machine[i], row.mcsw[i] = median(mc), median(cs)
		}
		b.rep.placements = append(b.rep.placements, row)
	}
	b.rep.placementSize = size
	return nil
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func (p placementRow) cells() []string {
	f2 := func(xs ...float64) string {
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = fmt.Sprintf("%.2f", x)
		}
		return strings.Join(s, " / ")
	}
	return []string{p.name, fmtVal(p.direct, true), fmtVal(p.dynapm, true),
		fmt.Sprintf("%.2f (%.2f–%.2f)", p.ratio, p.lo, p.hi),
		f2(p.cpu[:]...), f2(p.wait[:]...), f2(p.migrations[:]...),
		f2(p.machine[:]...), fmt.Sprintf("%.1f / %.1f", p.mcsw[0], p.mcsw[1])}
}

var placementHeader = []string{"placement (CPU A | CPU B)", "direct MB/s", "dynapm MB/s", "dynapm/direct",
	"CPU s/GB: client / proxy / backend", "run-queue wait s/GB: client / proxy / backend", "migrations per MB: client / proxy / backend",
	"machine CPU s/GB: direct / dynapm", "machine context switches per MB: direct / dynapm"}
