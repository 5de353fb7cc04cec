// Command reload measures hot reload with many apps configured: the time
// from writing a new app file to its listener accepting (and to a first
// echo through it, which includes the app's cold start), and the time from
// an edit of a running app's command to the restarted app serving. It
// prints medians over -reps repetitions, debounce included.
//
// It builds the dynapm binary and the test app, writes -others on-demand
// app files (each with its own listener) plus one persistent target app to
// a temporary apps.d, and runs the daemon on it. All traffic stays on
// 127.0.0.1 and every wait is bounded.
//
// Usage (from the module root): go run ./bench/reload [-others 1000] [-reps 20]
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
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	others := flag.Int("others", 1000, "other app files configured")
	reps := flag.Int("reps", 20, "repetitions of each measurement")
	flag.Parse()
	if err := run(*others, *reps); err != nil {
		fmt.Fprintln(os.Stderr, "bench/reload:", err)
		os.Exit(1)
	}
}

// waitLimit bounds every wait: a reload that takes longer is a failure.
const waitLimit = 30 * time.Second

func run(others, reps int) error {
	work, err := os.MkdirTemp("", "dynapm-reload-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dynapm, app := filepath.Join(work, "dynapm"), filepath.Join(work, "testapp")
	for bin, pkg := range map[string]string{dynapm: ".", app: "./internal/testapp"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", pkg, err, out)
		}
	}
	apps := filepath.Join(work, "apps.d")
	if err := os.Mkdir(apps, 0o755); err != nil {
		return err
	}
	appFile := func(listen, pidfile, mode string) []byte {
		return fmt.Appendf(nil, "listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-pidfile\", %q]\nmode: %s\nstop_timeout: 2s\n",
			listen, app, pidfile, mode)
	}
	for i := range others {
		f := filepath.Join(apps, fmt.Sprintf("other%04d.yaml", i))
		if err := os.WriteFile(f, appFile(freeAddr(), filepath.Join(work, "other.pid"), "on-demand"), 0o644); err != nil {
			return err
		}
	}
	target, targetPath := freeAddr(), filepath.Join(apps, "target.yaml")
	if err := os.WriteFile(targetPath, appFile(target, filepath.Join(work, "target-0.pid"), "persistent"), 0o644); err != nil {
		return err
	}

	daemon := exec.Command(dynapm, "run", "-apps", apps, "-state", filepath.Join(work, "state"))
	logf, err := os.Create(filepath.Join(work, "daemon.log"))
	if err != nil {
		return err
	}
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		_ = daemon.Wait()
	}()
	if err := waitFor(func() bool { return echo(target) }); err != nil {
		return fmt.Errorf("daemon did not serve the target app: %w", err)
	}

	// New file: write, then time until the listener accepts and until a
	// first echo (cold start included) comes back. Removed after each rep
	// so that the number of apps stays put.
	var accept, served []time.Duration
	for i := range reps {
		listen, path := freeAddr(), filepath.Join(apps, fmt.Sprintf("new%02d.yaml", i))
		start := time.Now()
		if err := os.WriteFile(path, appFile(listen, filepath.Join(work, "new.pid"), "on-demand"), 0o644); err != nil {
			return err
		}
		if err := waitFor(func() bool { return dialable(listen) }); err != nil {
			return fmt.Errorf("new app %d never accepted: %w", i, err)
		}
		accept = append(accept, time.Since(start))
		if err := waitFor(func() bool { return echo(listen) }); err != nil {
			return fmt.Errorf("new app %d never served: %w", i, err)
		}
		served = append(served, time.Since(start))
		if err := os.Remove(path); err != nil {
			return err
		}
		if err := waitFor(func() bool { return !dialable(listen) }); err != nil {
			return fmt.Errorf("removed app %d still listening: %w", i, err)
		}
	}

	// Command edit: a new -pidfile argument is a new command; the new
	// process writes that file once it listens, then an echo through
	// DynaPM proves it serves.
	var restart []time.Duration
	for i := range reps {
		pidfile := filepath.Join(work, fmt.Sprintf("target-%d.pid", i+1))
		start := time.Now()
		if err := os.WriteFile(targetPath, appFile(target, pidfile, "persistent"), 0o644); err != nil {
			return err
		}
		if err := waitFor(func() bool { return exists(pidfile) && echo(target) }); err != nil {
			return fmt.Errorf("edited app %d never served: %w", i, err)
		}
		restart = append(restart, time.Since(start))
	}

	fmt.Printf("DynaPM hot reload, %s, %d CPUs, %d other apps, %d reps (debounce included)\n",
		time.Now().Format(time.RFC3339), runtime.NumCPU(), others, reps)
	report("new file -> listener accepts", accept)
	report("new file -> first echo (cold start)", served)
	report("command edit -> restarted app serves", restart)
	return nil
}

func report(what string, ds []time.Duration) {
	if os.Getenv("BENCH_RAW") != "" {
		fmt.Println(what, ds)
	}
	slices.Sort(ds)
	fmt.Printf("  %-40s median %7.1f ms   p90 %7.1f ms   max %7.1f ms\n", what,
		ms(ds[len(ds)/2]), ms(ds[len(ds)*9/10]), ms(ds[len(ds)-1]))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// waitFor polls cond every millisecond for up to waitLimit.
func waitFor(cond func() bool) error {
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// echo reports whether a connection to addr echoes a message.
func echo(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	const msg = "ping"
	if _, err := io.WriteString(c, msg); err != nil {
		return false
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return false
	}
	b, err := io.ReadAll(c)
	return err == nil && strings.TrimSpace(string(b)) == msg
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
