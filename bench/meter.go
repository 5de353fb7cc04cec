package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// machineUsage is what the whole machine has done so far, from /proc/stat.
type machineUsage struct {
	// busy is user+nice+system+irq+softirq+steal over all CPUs: work that
	// a proxy moves into softirq or kernel threads is charged to whichever
	// process happens to run, so only the machine's total sees all of it.
	busy    time.Duration
	softirq time.Duration // the part of busy spent in softirq: the loopback's TCP receive path, mostly
	ctxt    int64         // context switches, all CPUs
}

// parseProcStat reads the aggregate "cpu" line and "ctxt" of /proc/stat.
func parseProcStat(data []byte) (machineUsage, error) {
	var u machineUsage
	var sawCPU, sawCtxt bool
	for _, line := range bytes.Split(data, []byte("\n")) {
		f := strings.Fields(string(line))
		switch {
		case len(f) >= 9 && f[0] == "cpu":
			// user nice system idle iowait irq softirq steal [guest guest_nice];
			// guest time is already inside user.
			var ticks int64
			for _, i := range []int{1, 2, 3, 6, 7, 8} {
				n, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					return u, fmt.Errorf("parsing /proc/stat: cpu field %d: %q is not a number", i, f[i])
				}
				ticks += n
			}
			u.busy = time.Duration(ticks) * clockTick
			soft, _ := strconv.ParseInt(f[7], 10, 64)
			u.softirq = time.Duration(soft) * clockTick
			sawCPU = true
		case len(f) == 2 && f[0] == "ctxt":
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return u, fmt.Errorf("parsing /proc/stat: ctxt: %q is not a number", f[1])
			}
			u.ctxt = n
			sawCtxt = true
		}
	}
	if !sawCPU || !sawCtxt {
		return u, fmt.Errorf("parsing /proc/stat: no cpu or ctxt line")
	}
	return u, nil
}

func readMachine() machineUsage {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineUsage{}
	}
	u, _ := parseProcStat(data)
	return u
}

// meter charges one load to the proxy's processes (none for pid 0) and
// to the whole machine.
type meter struct {
	pids []int
	proc procUsage
	mach machineUsage
}

func startMeter(pids ...int) meter {
	return meter{pids: pids, proc: usageOf(pids), mach: readMachine()}
}

// usageOf sums usage over pids: a proxy of several processes (nginx's
// master and workers) is charged all of them.
func usageOf(pids []int) procUsage {
	var u procUsage
	for _, pid := range pids {
		p := usage(pid)
		u.cpu, u.csw = u.cpu+p.cpu, u.csw+p.csw
	}
	return u
}

// cost is what one load cost.
type cost struct {
	cpu, machine time.Duration // the proxy's CPU time; the machine's busy time
	softirq      time.Duration // the machine's, part of machine
	csw, mcsw    int64         // the proxy's context switches; the machine's
}

func (m meter) stop() cost {
	p := usageOf(m.pids).sub(m.proc)
	mach := readMachine()
	return cost{cpu: p.cpu, csw: p.csw, machine: mach.busy - m.mach.busy, softirq: mach.softirq - m.mach.softirq,
		mcsw: mach.ctxt - m.mach.ctxt}
}

// charge records c in s.
func (s *sample) charge(c cost) {
	s.cpu, s.csw = c.cpu.Seconds(), float64(c.csw)
	s.machine, s.softirq, s.mcsw = c.machine.Seconds(), c.softirq.Seconds(), float64(c.mcsw)
}
