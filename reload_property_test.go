package main

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appsdir"
	"github.com/dynapm/dynapm/internal/procnet"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/settings"
)

// reloadDeadline is how soon after a change to apps.d (or a port freed)
// what is served must match the oracle.
const reloadDeadline = time.Second

// echoStart bounds how long a connection made within reloadDeadline may
// wait for its app's program to start and answer.
const echoStart = 3 * time.Second

// Seeded random sequences of changes to apps.d, applied by the real
// watcher and the daemon's apply in this process, against an oracle:
// after every step, within reloadDeadline, every app whose last valid
// version asked for a free port is served there, and every other port
// an app ever asked for is closed. The changes: add, edit, remove,
// invalid edits, files refused for their owner, ports held by another
// program (and freed again), and the daemon's own metrics address.
// DYNAPM_RELOAD_SEED=N replays one seed.
func TestReloadNeverWedgesUnderRandomChanges(t *testing.T) {
	seeds := []int64{1, 2, 3}
	steps := 24
	if s := os.Getenv("DYNAPM_RELOAD_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("DYNAPM_RELOAD_SEED=%q: %v", s, err)
		}
		seeds = []int64{n}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { newReloadWalk(t, seed).run(steps) })
	}
}

// walkFile is the oracle's picture of one app file.
type walkFile struct {
	path    string
	port    int  // the port its content asks for
	valid   bool // it parses
	refused bool // its owner is refused (or, not as root, it asks for user:)
	version int  // changes with every edit
	// good is the port of the version in force, 0 when none is.
	good int
}

type reloadWalk struct {
	t       *testing.T
	seed    int64
	rng     *rand.Rand
	dir     string
	bin     string
	files   map[string]*walkFile
	held    map[int]net.Listener // ports held by "another program"
	metrics int                  // the daemon's metrics port
	used    []int                // every port an app file asked for
	names   int
	steps   []string
}

func newReloadWalk(t *testing.T, seed int64) *reloadWalk {
	metricsAddr := testutil.FreeAddr(t)
	d, _ := newInProcessDaemon(t, func(s *settings.Settings) { s.Metrics = metricsAddr })
	if err := d.serveMetrics(settings.Settings{Metrics: metricsAddr}); err != nil {
		t.Fatal(err)
	}
	w := &reloadWalk{t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), dir: t.TempDir(), bin: testutil.TestApp(t),
		files: map[string]*walkFile{}, held: map[int]net.Listener{}}
	w.metrics, _ = strconv.Atoi(metricsAddr[strings.LastIndexByte(metricsAddr, ':')+1:])
	watcher, err := appsdir.New(appsdir.Config{Dir: w.dir, Apply: d.apply, Logger: d.log, Trust: &d.trust,
		Debounce: 5 * time.Millisecond, Retry: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = watcher.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		for _, l := range w.held {
			l.Close()
		}
		if t.Failed() {
			t.Logf("steps of seed %d (replay with DYNAPM_RELOAD_SEED=%d):\n%s", seed, seed, strings.Join(w.steps, "\n"))
		}
	})
	return w
}

// run makes n random changes, checking the oracle after each.
func (w *reloadWalk) run(n int) {
	for i := range n {
		w.step()
		w.check(i)
	}
}

// step makes one random change to apps.d or to the ports held elsewhere.
func (w *reloadWalk) step() {
	f := w.pick()
	switch op := w.rng.Intn(14); {
	case f == nil || op < 2:
		w.add(w.freshPort(), true, false, "add")
	case op == 2:
		w.add(w.heldPort(), true, false, "add on a port held elsewhere")
	case op == 3:
		w.add(w.metrics, true, false, "add on the metrics address")
	case op == 4:
		w.add(w.freshPort(), true, true, "add refused for its owner")
	case op == 5:
		w.add(w.freshPort(), false, false, "add invalid")
	case op == 6:
		f.valid = true
		w.write(f, "edit idle_timeout")
	case op == 7:
		f.port, f.valid = w.freshPort(), true
		w.write(f, "edit listen")
	case op == 8:
		f.port, f.valid = w.heldPort(), true
		w.write(f, "edit listen onto a port held elsewhere")
	case op == 9:
		f.port, f.valid = w.metrics, true
		w.write(f, "edit listen onto the metrics address")
	case op == 10:
		f.valid = false
		w.write(f, "invalid edit")
	case op == 11:
		f.refused = !f.refused
		w.write(f, fmt.Sprintf("owner refused: %v", f.refused))
	case op == 12:
		if err := os.Remove(f.path); err != nil {
			w.t.Fatal(err)
		}
		delete(w.files, filepath.Base(f.path))
		w.note("remove %s", filepath.Base(f.path))
	default:
		w.freeHeld()
	}
	// What the oracle expects in force now.
	for _, f := range w.files {
		if f.valid && !f.refused && w.held[f.port] == nil && f.port != w.metrics {
			f.good = f.port
		}
	}
}

// pick returns a random app file, nil when there is none.
func (w *reloadWalk) pick() *walkFile {
	names := make([]string, 0, len(w.files))
	for name := range w.files {
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	return w.files[names[w.rng.Intn(len(names))]]
}

func (w *reloadWalk) add(port int, valid, refused bool, what string) {
	w.names++
	f := &walkFile{path: filepath.Join(w.dir, fmt.Sprintf("app%d.yaml", w.names)), port: port, valid: valid, refused: refused}
	w.files[filepath.Base(f.path)] = f
	w.write(f, what)
}

// write puts f's content in place at once (rename over, with its owner
// already set), as an editor that saves atomically does.
func (w *reloadWalk) write(f *walkFile, what string) {
	f.version++
	content := fmt.Sprintf("listen: \"127.0.0.1:%d\"\ncommand: [%q, \"-mode\", \"echo\"]\nidle_timeout: %dm\nstart_timeout: 20s\nstop_timeout: 2s\n",
		f.port, w.bin, f.version)
	if !f.valid {
		content += "max_pending: lots\n"
	}
	if f.refused && os.Geteuid() != 0 {
		content += "user: nobody\n" // only root may give it
	}
	tmp := filepath.Join(w.dir, ".tmp")
	testutil.WriteFile(w.t, tmp, content)
	if os.Geteuid() == 0 {
		owner := 0
		if f.refused {
			owner = testutil.Nobody
		}
		if err := os.Chown(tmp, owner, owner); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, f.path); err != nil {
		w.t.Fatal(err)
	}
	w.note("%s: %s (port %d, valid %v, refused %v)", filepath.Base(f.path), what, f.port, f.valid, f.refused)
}

// freshPort is a free port no app file asked for yet.
func (w *reloadWalk) freshPort() int {
	for {
		p := testutil.FreePort(w.t)
		if !slices.Contains(w.used, p) && p != w.metrics {
			w.used = append(w.used, p)
			return p
		}
	}
}

// heldPort is a fresh port that another program (this test) listens on.
func (w *reloadWalk) heldPort() int {
	for {
		p := w.freshPort()
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			w.held[p] = l
			return p
		}
	}
}

// freeHeld closes one of the ports held elsewhere.
func (w *reloadWalk) freeHeld() {
	ports := make([]int, 0, len(w.held))
	for p := range w.held {
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		w.note("nothing held to free")
		return
	}
	slices.Sort(ports)
	p := ports[w.rng.Intn(len(ports))]
	w.held[p].Close()
	delete(w.held, p)
	w.note("port %d freed", p)
}

func (w *reloadWalk) note(format string, args ...any) {
	w.steps = append(w.steps, fmt.Sprintf(format, args...))
}

// check waits up to reloadDeadline for the oracle to hold.
func (w *reloadWalk) check(step int) {
	w.t.Helper()
	deadline := time.Now().Add(reloadDeadline)
	for {
		bad := w.violations()
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("seed %d, step %d (%s): after %v: %s", w.seed, step, w.steps[len(w.steps)-1], reloadDeadline, bad)
		}
		time.Sleep(10 * time.Millisecond) // the pace of polling, not synchronisation
	}
}

// violations describes how what is served differs from the oracle, or is
// "".
func (w *reloadWalk) violations() string {
	served := map[int]string{}
	for name, f := range w.files {
		if f.good != 0 {
			served[f.good] = name
		}
	}
	var bad []string
	for _, p := range w.used {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		switch name, want := served[p]; {
		case want:
			if !echoes(addr) && !foreign(p) {
				bad = append(bad, fmt.Sprintf("%s of %s is not served", addr, name))
			}
		case w.held[p] != nil:
		case !closed(addr) && !foreign(p):
			bad = append(bad, fmt.Sprintf("%s is open, but no app in force asks for it", addr))
		}
	}
	return strings.Join(bad, "; ")
}

// echoes reports whether a connection to addr is served by an echo app.
// The reply may take echoStart: the deadline is on the daemon's reload,
// not on how fast a loaded machine starts a program.
func echoes(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(echoStart))
	if _, err := io.WriteString(c, "ping"); err != nil {
		return false
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return false
	}
	b, err := io.ReadAll(c)
	return err == nil && string(b) == "ping"
}

// foreign reports whether another process listens on port p of
// 127.0.0.1: the tests of other packages, run beside this one, may take a
// port between this walk's picking it and the daemon's binding it, or
// after the daemon let it go.
func foreign(p int) bool {
	inodes, err := procnet.Bound(procnet.TCPTables, procnet.TCPListen, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p)))
	if err != nil || len(inodes) == 0 {
		return false
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false
	}
	ours := make(map[string]bool, len(fds))
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil {
			ours[l] = true
		}
	}
	for _, ino := range inodes {
		if ours["socket:["+ino+"]"] {
			return false
		}
	}
	return true
}

// closed reports whether nothing listens on addr.
func closed(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// The walk's oracle tells another process's listener from the daemon's.
func TestForeignTellsAnotherProcessesListener(t *testing.T) {
	own, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if foreign(own.Addr().(*net.TCPAddr).Port) {
		t.Error("this process's listener taken for another's")
	}
	addr := testutil.FreeAddr(t)
	port, _ := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	cmd := exec.Command(testutil.TestApp(t), "-mode", "echo", "-listen", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	testutil.Eventually(t, 10*time.Second, func() bool { return !closed(addr) }, "%s not listening", addr)
	if !foreign(port) {
		t.Errorf("the listener of pid %d on %s not taken for another process's", cmd.Process.Pid, addr)
	}
}
