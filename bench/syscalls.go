package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// syscallRow is what one proxy costs per operation in one scenario.
type syscallRow struct {
	scenario, target, unit string
	syscalls, csw          float64 // per operation, from perf stat
	top                    string  // the most frequent calls per operation, from strace -c
}

// syscallScenario counts, for dynapm and haproxy, system calls and context
// switches per request (keep-alive), per connection (new connections) and
// per MB (bulk), with perf stat on the proxy process while the load runs;
// then strace -c names the calls. Both slow the proxy down (strace much
// more), so this runs after, and apart from, the timed measurements.
func (b *bench) syscallScenario(ctx context.Context) error {
	_, perfErr := exec.LookPath("perf")
	_, straceErr := exec.LookPath("strace")
	if perfErr != nil && straceErr != nil {
		b.rep.note("neither perf nor strace is installed: no system call counts.")
		return nil
	}
	d := 3 * time.Second
	for _, t := range b.present()[1:] {
		pid := b.proxyPid(t)
		type load struct {
			name, unit string
			run        func() (float64, error)
		}
		loads := []load{}
		if b.hasWrk {
			for _, l := range []struct {
				name, unit string
				load       wrkLoad
			}{{"keep-alive", "request", loadKeepAlive}, {"new connections", "connection", loadNewConn}} {
				loads = append(loads, load{l.name, l.unit, func() (float64, error) {
					r, err := runWrk(ctx, l.load, "http://"+b.httpAddr[t]+"/", d)
					return r.requests, err
				}})
			}
		}
		if b.cfg.want("bulk") {
			loads = append(loads, load{"bulk", "MB", func() (float64, error) {
				size := min(b.cfg.bulk, 1<<30)
				_, err := download(b.bulkAddr[t], size)
				return float64(size) / 1e6, err
			}})
		}
		for _, l := range loads {
			row := syscallRow{scenario: l.name, target: t, unit: l.unit}
			if perfErr == nil {
				calls, csw, ops, err := perfStat(pid, l.run)
				if err != nil {
					return fmt.Errorf("perf stat on %s, %s: %w", t, l.name, err)
				}
				row.syscalls, row.csw = calls/ops, csw/ops
			}
			if straceErr == nil {
				top, err := straceTop(b.work, pid, l.run)
				if err != nil {
					return fmt.Errorf("strace on %s, %s: %w", t, l.name, err)
				}
				row.top = top
			}
			progress("syscalls %-16s %-7s %6.2f syscalls and %5.2f context switches per %s; %s",
				l.name, t, row.syscalls, row.csw, l.unit, row.top)
			b.rep.syscalls = append(b.rep.syscalls, row)
		}
	}
	return nil
}

// perfStat counts pid's system calls and context switches while run runs.
func perfStat(pid int, run func() (float64, error)) (calls, csw, ops float64, err error) {
	out := filepath.Join(os.TempDir(), fmt.Sprintf("dynapm-bench-perf-%d.csv", os.Getpid()))
	defer os.Remove(out)
	cmd := exec.Command("perf", "stat", "-x,", "-o", out, "-e", "raw_syscalls:sys_enter,context-switches",
		"-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	time.Sleep(200 * time.Millisecond) // let perf attach
	ops, err = run()
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if err != nil {
		return 0, 0, 0, err
	}
	data, rerr := os.ReadFile(out)
	if rerr != nil {
		return 0, 0, 0, rerr
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(l, ",")
		if len(f) < 3 {
			continue
		}
		v, _ := strconv.ParseFloat(f[0], 64)
		switch {
		case strings.Contains(f[2], "sys_enter"):
			calls = v
		case strings.Contains(f[2], "context-switches"):
			csw = v
		}
	}
	return calls, csw, ops, nil
}

// straceTop runs run under strace -c -f on pid and returns the most
// frequent system calls per operation.
func straceTop(work string, pid int, run func() (float64, error)) (string, error) {
	out := filepath.Join(work, "strace.txt")
	cmd := exec.Command("strace", "-c", "-f", "-q", "-o", out, "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		return "", err
	}
	time.Sleep(300 * time.Millisecond)
	ops, err := run()
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if err != nil {
		return "", err
	}
	f, err := os.Open(out)
	if err != nil {
		return "", err
	}
	defer f.Close()
	type call struct {
		name          string
		calls, errors float64
	}
	var cs []call
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// "% time seconds usecs/call calls [errors] syscall"
		if len(fs) < 5 || fs[0] == "%" || strings.HasPrefix(fs[0], "-") || fs[len(fs)-1] == "total" {
			continue
		}
		n, err := strconv.ParseFloat(fs[3], 64)
		if err != nil {
			continue
		}
		c := call{name: fs[len(fs)-1], calls: n}
		if len(fs) == 6 {
			c.errors, _ = strconv.ParseFloat(fs[4], 64)
		}
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].calls > cs[j].calls })
	var parts []string
	for i, c := range cs {
		if i == 12 || c.calls/ops < 0.01 {
			break
		}
		s := fmt.Sprintf("%s %.2f", c.name, c.calls/ops)
		if c.errors > 0 {
			s += fmt.Sprintf(" (%.2f err)", c.errors/ops)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", "), nil
}
