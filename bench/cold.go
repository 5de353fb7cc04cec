package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// coldProgram is a server started on demand: as an app of the main daemon
// and, for comparison, alone.
type coldProgram struct {
	label   string
	app     app
	request string // what the client sends to get a first byte
	// udp: the app listens on UDP (its listen address ends in /udp), and
	// the first byte is the reply to a datagram.
	udp bool
}

// dialAttempt bounds one connect attempt of the cold-path clients. A
// connect on the loopback completes (or is refused) in microseconds, and
// DynaPM's listener completes it at once even while the app is stopped.
const dialAttempt = 25 * time.Millisecond

const httpRequest = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"

// nodeServer is the smallest Node.js HTTP server.
const nodeServer = `require("http").createServer((q, s) => s.end("ok")).listen(+process.env.PORT, "127.0.0.1")`

// coldPrograms lists the programs to wake: the Go backend always, Python
// and Node servers where installed.
func (b *bench) coldPrograms(dir string) ([]coldProgram, error) {
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("ok\n"), 0o644); err != nil {
		return nil, err
	}
	idle := "idle_timeout: 50ms\n"
	ps := []coldProgram{{label: "Go (bench backend)", request: "PING\n",
		app: app{name: "cold-go", listen: freeAddr(), command: []string{b.backendBin, "-backend", "127.0.0.1:${PORT}"}, extra: idle}},
		// The same program saying READY=1 once it listens: what waiting
		// for a notification costs over the program's own start.
		{label: "Go, ready: {notify: true}", request: "PING\n",
			app: app{name: "cold-go-notify", listen: freeAddr(), command: []string{b.backendBin, "-backend", "127.0.0.1:${PORT}"},
				extra: idle + "ready: {notify: true}\n"}},
		// The same program accepting from the socket DynaPM hands it
		// (LISTEN_FDS): the first byte needs no probe and no splice.
		{label: "Go, handoff: socket", request: "PING\n",
			app: app{name: "cold-go-socket", listen: freeAddr(), command: []string{b.backendBin, "-backend", "127.0.0.1:${PORT}"},
				extra: idle + "handoff: socket\n"}}}
	if b.python = pythonPath(); b.python != "" {
		ps = append(ps, coldProgram{label: "Python (python3 -m http.server)", request: httpRequest,
			app: app{name: "cold-python", listen: freeAddr(),
				command: []string{b.python, "-m", "http.server", "--bind", "127.0.0.1", "${PORT}"},
				extra:   fmt.Sprintf("dir: %q\n%s", www, idle)}})
	} else {
		b.rep.note("python3 is not installed: no Python cold wake.")
	}
	if node, err := exec.LookPath("node"); err == nil {
		ps = append(ps, coldProgram{label: "Node (http.createServer)", request: httpRequest,
			app: app{name: "cold-node", listen: freeAddr(), command: []string{node, "-e", nodeServer}, extra: idle}})
	} else {
		b.rep.note("node is not installed: no Node cold wake.")
	}
	return ps, nil
}

// coldScenario alternates, per program, a bare start (spawn to first byte)
// and a wake through DynaPM (connect to first byte), and reports the
// median of the differences as DynaPM's overhead.
func (b *bench) coldScenario(ctx context.Context) error {
	for _, p := range b.cold {
		if err := b.coldWakes(p); err != nil {
			return err
		}
	}
	return b.daemon.waitStopped("cold-go", 20*time.Second)
}

// coldWakes measures -wakes pairs of p's bare start and wake through
// DynaPM, and reports the median of the paired differences as DynaPM's
// overhead.
func (b *bench) coldWakes(p coldProgram) error {
	var bare, woken []time.Duration
	for i := 0; i < b.cfg.wakes; i++ {
		d, err := bareStart(p, b.work)
		if err != nil {
			return fmt.Errorf("%s alone: %w", p.label, err)
		}
		if err := b.daemon.waitStopped(p.app.name, 20*time.Second); err != nil {
			return err
		}
		var w time.Duration
		if p.udp {
			w, err = udpFirstReply(strings.TrimSuffix(p.app.listen, "/udp"), 30*time.Second)
		} else {
			w, err = firstByte(p.app.listen, p.request, 30*time.Second)
		}
		if err != nil {
			return fmt.Errorf("waking %s through dynapm: %w", p.label, err)
		}
		bare, woken = append(bare, d), append(woken, w)
	}
	over := medianDiff(woken, bare)
	progress("cold %-32s alone %8s  through dynapm %8s  overhead %8s (quartiles %s–%s)", p.label,
		medianDur(bare).Round(time.Microsecond), medianDur(woken).Round(time.Microsecond), over.Round(time.Microsecond),
		diffQuartile(woken, bare, 1).Round(time.Microsecond), diffQuartile(woken, bare, 3).Round(time.Microsecond))
	scen := "cold wake: " + p.label
	via, first := "connect", "first byte"
	if p.udp {
		via, first = "send", "reply to the first datagram"
	}
	b.rep.facts = append(b.rep.facts,
		factRow{scen, "program alone, spawn to " + first + " (median)", ms(medianDur(bare)), ""},
		factRow{scen, "through dynapm, " + via + " to " + first + " (median)", ms(medianDur(woken)), ""},
		factRow{scen, fmt.Sprintf("overhead, median of %d paired differences", b.cfg.wakes), ms(over), "< 1 ms"})
	return nil
}

// bareStart starts the program directly, as DynaPM would (same argv,
// directory and $PORT), and returns the time from the spawn to the first
// byte of an answer, polling connect as tightly as a client could.
func bareStart(p coldProgram, work string) (time.Duration, error) {
	addr := freeAddr()
	if p.udp {
		addr = freeUDPAddr()
	}
	_, port, _ := net.SplitHostPort(addr)
	argv := make([]string, len(p.app.command))
	for i, a := range p.app.command {
		argv[i] = strings.ReplaceAll(a, "${PORT}", port)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "PORT="+port)
	cmd.Dir = work
	if d := dirOf(p.app.extra); d != "" {
		cmd.Dir = d
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var err error
	if p.udp {
		_, err = udpPollReply(start, addr, 30*time.Second)
	} else {
		_, err = firstByteFrom(start, addr, p.request, 30*time.Second)
	}
	if err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// dirOf returns the dir: line of an app's extra YAML.
func dirOf(extra string) string {
	for _, l := range strings.Split(extra, "\n") {
		if v, ok := strings.CutPrefix(l, "dir: "); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// pollPause waits 100 µs between connect attempts. It sleeps the thread
// with nanosleep: time.Sleep rounds a sub-millisecond wait up to about
// 1.1 ms while the runtime has nothing else to do (its epoll_wait takes
// whole milliseconds), so the bare start, polled from here, would lose
// half a millisecond on average to its poll and flatter DynaPM, whose
// readiness probe polls with nanosleep.
func pollPause() {
	ts := unix.NsecToTimespec(int64(100 * time.Microsecond))
	_ = unix.Nanosleep(&ts, nil)
}

// firstByte connects (retrying refused connects every 100µs), sends req
// and returns the time from the first connect attempt to the first byte of
// the answer.
func firstByte(addr, req string, limit time.Duration) (time.Duration, error) {
	return firstByteFrom(time.Now(), addr, req, limit)
}

func firstByteFrom(start time.Time, addr, req string, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for {
		// A short timeout per attempt: on a loopback busy with other
		// programs' connections a SYN is sometimes dropped, and the
		// kernel would retransmit it only after a second.
		c, err := net.DialTimeout("tcp", addr, dialAttempt)
		if err != nil {
			if time.Now().After(deadline) {
				return 0, err
			}
			pollPause()
			continue
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		if _, err := io.WriteString(c, req); err != nil {
			return 0, err
		}
		if _, err := bufio.NewReader(c).ReadByte(); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}
