package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run builds and starts DynaPM, measures both paths and prints the report.
func run(bulkBytes int64, runs, wakes int) error {
	work, err := os.MkdirTemp("", "dynapm-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dynapm := filepath.Join(work, "dynapm")
	if out, err := exec.Command("go", "build", "-o", dynapm, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("building dynapm: %v\n%s", err, out)
	}
	// A copy of this program, so that the benchmark's backend is a plain
	// binary even when it runs under "go run".
	backendBin := filepath.Join(work, "backend")
	if err := copyFile(self, backendBin); err != nil {
		return err
	}

	bulkDirect, bulkListen := freeAddr(), freeAddr()
	coldUp, coldListen := freeAddr(), freeAddr()
	coldPid := filepath.Join(work, "cold.pid")
	apps := filepath.Join(work, "apps.d")
	if err := os.Mkdir(apps, 0o755); err != nil {
		return err
	}
	writeApp := func(name, listen, upstream, pidfile, settings string) error {
		return os.WriteFile(filepath.Join(apps, name+".yaml"), []byte(fmt.Sprintf(
			"listen: %q\nupstream: %q\ncommand: [%q, \"-backend\", %q, \"-pidfile\", %q]\n%s",
			listen, upstream, backendBin, upstream, pidfile, settings)), 0o644)
	}
	if err := writeApp("bulk", bulkListen, bulkDirect, "", "mode: persistent\n"); err != nil {
		return err
	}
	if err := writeApp("cold", coldListen, coldUp, coldPid, "idle_timeout: 50ms\n"); err != nil {
		return err
	}

	daemon := exec.Command(dynapm, "run", "-apps", apps, "-state", filepath.Join(work, "state"))
	daemonLog, err := os.Create(filepath.Join(work, "daemon.log"))
	if err != nil {
		return err
	}
	daemon.Stdout, daemon.Stderr = daemonLog, daemonLog
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		_ = daemon.Wait()
	}()
	if err := waitDial(bulkDirect, 30*time.Second); err != nil {
		return fmt.Errorf("persistent bulk backend did not come up: %w", err)
	}

	fmt.Printf("DynaPM benchmark, %s, %d CPUs\n\n", time.Now().Format(time.RFC3339), runtime.NumCPU())

	// Bulk: alternate direct and DynaPM so that both see the same machine.
	var direct, proxied []float64
	for i := 0; i < runs; i++ {
		d, err := download(bulkDirect, bulkBytes)
		if err != nil {
			return fmt.Errorf("direct download: %w", err)
		}
		p, err := download(bulkListen, bulkBytes)
		if err != nil {
			return fmt.Errorf("download through dynapm: %w", err)
		}
		direct, proxied = append(direct, d), append(proxied, p)
	}
	md, mp := median(direct), median(proxied)
	fmt.Printf("bulk (%d MiB x %d, one connection each)\n", bulkBytes>>20, runs)
	fmt.Printf("  direct        %8.0f MB/s\n", md/1e6)
	fmt.Printf("  through dynapm%8.0f MB/s\n", mp/1e6)
	fmt.Printf("  ratio         %8.2f  (goal >= 0.75)\n\n", mp/md)

	// Cold wake: DynaPM's connect-to-first-byte for a stopped app vs the
	// program's own start-to-first-byte, alternating.
	var bare, woken []time.Duration
	for i := 0; i < wakes; i++ {
		b, err := bareStart(backendBin, freeAddr())
		if err != nil {
			return fmt.Errorf("bare start: %w", err)
		}
		if err := waitStopped(coldPid, 20*time.Second); err != nil {
			return err
		}
		w, err := firstByte(coldListen, 30*time.Second)
		if err != nil {
			return fmt.Errorf("cold wake through dynapm: %w", err)
		}
		bare, woken = append(bare, b), append(woken, w)
	}
	mb, mw := medianDur(bare), medianDur(woken)
	fmt.Printf("cold wake (%d wakes; backend: a small Go server)\n", wakes)
	fmt.Printf("  program alone, start to first byte   %8s\n", mb.Round(time.Microsecond))
	fmt.Printf("  through dynapm, connect to first byte%8s\n", mw.Round(time.Microsecond))
	fmt.Printf("  overhead (median of differences)     %8s  (goal < 1ms)\n", medianDiff(woken, bare).Round(time.Microsecond))
	return nil
}

// download reads n bytes from a BULK request and returns bytes per second.
func download(addr string, n int64) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	start := time.Now()
	if _, err := fmt.Fprintf(c, "BULK %d\n", n); err != nil {
		return 0, err
	}
	got, err := io.Copy(io.Discard, c)
	if err != nil {
		return 0, err
	}
	if got != n {
		return 0, fmt.Errorf("got %d bytes, want %d", got, n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// bareStart starts the backend directly and returns the time from the
// spawn to the first byte of a PING answer, polling connect as tightly as
// a client could.
func bareStart(bin, addr string) (time.Duration, error) {
	start := time.Now()
	cmd := exec.Command(bin, "-backend", addr)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if _, err := firstByte(addr, 30*time.Second); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// firstByte connects (retrying refused connects every 100µs) and returns
// the time from the first connect attempt to the first byte of the reply.
func firstByte(addr string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(limit)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			if time.Now().After(deadline) {
				return 0, err
			}
			time.Sleep(100 * time.Microsecond)
			continue
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		if _, err := io.WriteString(c, "PING\n"); err != nil {
			return 0, err
		}
		r := bufio.NewReader(c)
		if _, err := r.ReadByte(); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
}

// waitStopped waits until the process in pidfile (if any) has exited.
func waitStopped(pidfile string, limit time.Duration) error {
	data, err := os.ReadFile(pidfile)
	if err != nil {
		return nil // never started
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	deadline := time.Now().Add(limit)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("cold app pid %d still running after %s", pid, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return os.Remove(pidfile)
}

func waitDial(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianDur(xs []time.Duration) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianDiff(a, b []time.Duration) time.Duration {
	d := make([]time.Duration, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return medianDur(d)
}
