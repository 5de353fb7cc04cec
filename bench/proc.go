package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ, the unit of utime and stime in
// /proc/PID/stat; 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// procUsage is what a process has consumed so far.
type procUsage struct {
	cpu time.Duration // utime + stime, all threads
	csw int64         // voluntary + involuntary context switches, live threads
}

func (a procUsage) sub(b procUsage) procUsage {
	return procUsage{cpu: a.cpu - b.cpu, csw: a.csw - b.csw}
}

// usage reads pid's CPU time and context switches from /proc; zero for pid
// 0 (the direct path has no proxy).
func usage(pid int) procUsage {
	if pid == 0 {
		return procUsage{}
	}
	var u procUsage
	u.cpu, _ = cpuTime(pid)
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended
		}
		for _, key := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
			u.csw += statusField(data, key)
		}
	}
	return u
}

// cpuTime returns utime + stime of pid, summed over its threads.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields resume after its ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(ut+st) * clockTick, nil
}

// rssBytes returns pid's resident set size.
func rssBytes(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return statusField(data, "VmRSS:") << 10
}

// statusField returns the first number after key in a /proc status file.
func statusField(data []byte, key string) int64 {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+len(key):]))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}
