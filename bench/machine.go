package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// machine describes where the benchmark ran.
type machine struct {
	cpus           int
	model, kernel  string
	haproxy, wrk   string // versions; empty when not installed
	nginx          string
	python, node   string
	goVersion, mem string
}

func describeMachine() machine {
	m := machine{cpus: runtime.NumCPU(), goVersion: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.mem = fmt.Sprintf("%d MiB", statusField(data, "MemTotal:")>>10)
	}
	m.haproxy = firstLine("haproxy", "-v")
	m.wrk = firstLine("wrk", "-v")
	m.nginx = strings.TrimPrefix(firstLine("nginx", "-v"), "nginx version: ")
	m.python = firstLine(pythonPath(), "--version")
	m.node = firstLine("node", "--version")
	return m
}

// firstLine runs a version command and returns its first output line.
func firstLine(name string, args ...string) string {
	if name == "" {
		return ""
	}
	if _, err := exec.LookPath(name); err != nil {
		return ""
	}
	out, _ := exec.Command(name, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

// pythonPath is the real python3 executable (not a pyenv shim, whose shell
// start-up would be counted as the program's), or "" when absent.
func pythonPath() string {
	if _, err := exec.LookPath("python3"); err != nil {
		return ""
	}
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
