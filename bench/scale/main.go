// Command scale measures what scale buys against a CPU-bound backend: the
// request rate through DynaPM with the app's scale.max (and min) at 1, then
// at 2 (or -instances), same clients, same load.
//
// The backend is internal/testapp in echo mode with -work: each request
// (one small write, echoed back) costs a fixed amount of computation, and
// GOMAXPROCS=1 makes each process compute one request at a time, like a
// single-threaded server (Node.js, Python). Clients keep -clients
// connections open and send requests back to back for -duration; the
// connections are spread over the instances by least connections. All
// traffic stays on 127.0.0.1 and every loop is bounded in time.
//
// Usage (from the module root): go run ./bench/scale [-work 1ms] [-clients 8] [-duration 3s]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	work := flag.Duration("work", time.Millisecond, "CPU time per request in the backend")
	clients := flag.Int("clients", 8, "concurrent client connections")
	duration := flag.Duration("duration", 3*time.Second, "measuring time per configuration")
	instances := flag.Int("instances", 2, "instances of the scaled run")
	flag.Parse()
	if err := run(*work, *clients, *duration, *instances); err != nil {
		fmt.Fprintln(os.Stderr, "bench/scale:", err)
		os.Exit(1)
	}
}

// waitLimit bounds every wait for the daemon or an instance.
const waitLimit = 30 * time.Second

func run(work time.Duration, clients int, duration time.Duration, instances int) error {
	dir, err := os.MkdirTemp("", "dynapm-scale-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dynapm, app := filepath.Join(dir, "dynapm"), filepath.Join(dir, "testapp")
	for bin, pkg := range map[string]string{dynapm: ".", app: "./internal/testapp"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", pkg, err, out)
		}
	}
	fmt.Printf("DynaPM scale, %s, %d CPUs, backend work %v per request (GOMAXPROCS=1 each), %d clients, %v per run\n",
		time.Now().Format(time.RFC3339), runtime.NumCPU(), work, clients, duration)
	var base float64
	for _, n := range []int{1, instances} {
		rate, err := measure(dir, dynapm, app, n, work, clients, duration)
		if err != nil {
			return fmt.Errorf("%d instance(s): %w", n, err)
		}
		if n == 1 {
			base = rate
			fmt.Printf("  %d instance:  %8.0f req/s\n", n, rate)
		} else {
			fmt.Printf("  %d instances: %8.0f req/s  (%.2fx)\n", n, rate, rate/base)
		}
	}
	return nil
}

// measure runs a daemon with one app at n instances and returns the
// request rate the clients reach through it.
func measure(dir, dynapm, app string, n int, work time.Duration, clients int, duration time.Duration) (float64, error) {
	run := filepath.Join(dir, "run"+strconv.Itoa(n))
	apps := filepath.Join(run, "apps.d")
	if err := os.MkdirAll(apps, 0o755); err != nil {
		return 0, err
	}
	listen, err := freeAddr()
	if err != nil {
		return 0, err
	}
	spec := fmt.Sprintf("listen: %q\ncommand: 'exec %s -mode echo -work %s -pidfile %s/$INSTANCE.pid'\n"+
		"env: {GOMAXPROCS: \"1\"}\nmode: persistent\nscale: {max: %d, min: %d, target_connections: 100000}\nstop_timeout: 2s\n",
		listen, app, work, run, n, n)
	if err := os.WriteFile(filepath.Join(apps, "cpu.yaml"), []byte(spec), 0o644); err != nil {
		return 0, err
	}
	daemon := exec.Command(dynapm, "run", "-apps", apps, "-state", filepath.Join(run, "state"))
	logf, err := os.Create(filepath.Join(run, "daemon.log"))
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		_ = daemon.Wait()
	}()
	// Every instance listening (persistent, min n: all start at boot).
	deadline := time.Now().Add(waitLimit)
	for i := range n {
		for !exists(filepath.Join(run, strconv.Itoa(i)+".pid")) {
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("instance %d did not start; see %s", i, logf.Name())
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
	}
	conns := make([]net.Conn, 0, clients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range clients {
		c, err := net.DialTimeout("tcp", listen, waitLimit)
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
		if err := roundTrip(c, make([]byte, 64), time.Now().Add(waitLimit)); err != nil {
			return 0, fmt.Errorf("first request: %w", err)
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		first error
	)
	end := time.Now().Add(duration)
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			buf, count := make([]byte, 64), 0
			var err error
			for time.Now().Before(end) {
				if err = roundTrip(c, buf, end.Add(waitLimit)); err != nil {
					break
				}
				count++
			}
			mu.Lock()
			defer mu.Unlock()
			total += count
			if err != nil && first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return 0, first
	}
	return float64(total) / elapsed.Seconds(), nil
}

// roundTrip sends buf and reads it back.
func roundTrip(c net.Conn, buf []byte, deadline time.Time) error {
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf)
	return err
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
