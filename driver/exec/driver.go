// Package execdriver is the exec driver, DynaPM's own way to run an app
// (driver: exec, the default): the app's command runs as a child process
// in a process group of its own, so that a stop reaches everything the
// program started. It implements lifecycle.Driver; the lifecycle Manager
// owns states, readiness and timing.
//
// Nothing of an app outlives the daemon: a helper process, the reaper
// (reaper.go), kills every group still registered when the daemon dies,
// even by SIGKILL, and a record of each live group in the state directory
// (stale.go) lets the next daemon stop what a dead reaper left. Scheduled
// jobs get the same guard (track.go). Programs are forked by the daemon,
// or by the spawner helper (package spawner) once it holds many
// descriptors.
package execdriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/driver/exec/spawner"
	"github.com/dynapm/dynapm/lifecycle"
)

// Interface guard.
var _ lifecycle.Driver = (*Driver)(nil)

// defaultPath is the search path used when the app's environment has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Polling of a process group that is going away starts fast (most groups are
// gone at the first look or a few milliseconds later) and slows down, because
// a group that lingers may take its whole stop timeout.
const (
	groupPollMin = 2 * time.Millisecond
	groupPollMax = 100 * time.Millisecond
	// killGrace bounds the wait for a group after SIGKILL: a process stuck in
	// uninterruptible sleep must not hang a stop forever.
	killGrace = 5 * time.Second
)

// Driver starts programs as child processes, each in its own process
// group, so that stopping an app reaches everything it started. A helper
// process (the reaper) kills every group still registered when the daemon
// dies, even by SIGKILL.
type Driver struct {
	logger *slog.Logger
	// reaperMinLife: see defaultReaperMinLife (tests shorten it).
	reaperMinLife time.Duration
	// runDir, when set, holds a record of each live group (stale.go).
	runDir string

	// mu guards everything below.
	mu     sync.Mutex
	closed bool
	reaper *reaper
	// groups holds the live process groups by pgid (the leader's pid), from
	// Start until the group has no live member left.
	groups map[int]*process
	// tracked holds the groups started by StartGroup (scheduled jobs), by
	// pgid, with their app's name.
	tracked map[int]string

	// spawner, when set, starts the programs (see UseSpawner); nil once
	// its helper is gone.
	spawner *spawner.Client

	// wg counts the goroutines that wait for processes and for the reaper.
	wg sync.WaitGroup
}

// UseSpawner makes the driver start programs through c, whose helper
// process forks with a small descriptor table (see package spawner),
// rather than forking the daemon itself; nil goes back to forking. It may
// change at any time: a program is waited for the way it was started. If
// the helper dies, programs are started directly again.
func (d *Driver) UseSpawner(c *spawner.Client) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.spawner = c
}

// launchLocked starts cmd, through the spawner when there is one, and
// returns the pid and the function that waits for its exit. d.mu must be
// held.
func (d *Driver) launchLocked(cmd *exec.Cmd) (int, func() error, error) {
	if d.spawner != nil && !passesFiles(cmd) {
		req, err := spawnRequest(cmd)
		if err != nil {
			return 0, nil, err
		}
		out, _ := cmd.Stdout.(*os.File) // nil: /dev/null, as with exec
		ch, err := d.spawner.Spawn(req, out)
		if err == nil {
			return ch.Pid, ch.Wait, nil
		}
		if !errors.Is(err, spawner.ErrClosed) {
			return 0, nil, err
		}
		d.logger.Warn("the spawner helper is gone; starting programs from the daemon", "err", err)
		d.spawner = nil
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	return cmd.Process.Pid, cmd.Wait, nil
}

// spawnRequest is cmd as the spawner's helper runs it: the same program,
// arguments, environment, directory and credentials, in a process group of
// its own. Paths are made absolute: the helper runs in /.
func spawnRequest(cmd *exec.Cmd) (spawner.Request, error) {
	path, err := filepath.Abs(cmd.Path)
	if err != nil {
		return spawner.Request{}, err
	}
	dir, err := filepath.Abs(cmd.Dir) // "": the daemon's directory
	if err != nil {
		return spawner.Request{}, err
	}
	req := spawner.Request{Path: path, Args: cmd.Args, Env: cmd.Env, Dir: dir}
	if cmd.SysProcAttr != nil {
		req.Credential = cmd.SysProcAttr.Credential
	}
	return req, nil
}

// New returns a driver that logs to logger.
func New(logger *slog.Logger) *Driver {
	if logger == nil {
		logger = slog.Default()
	}
	return &Driver{
		logger:        logger,
		reaperMinLife: defaultReaperMinLife,
		groups:        make(map[int]*process),
		tracked:       make(map[int]string),
	}
}

// Start launches req.Spec.Command in a new process group, with req.Env as its
// whole environment, req.Spec.Dir as working directory, and stdout and stderr
// going to req.Log. It returns as soon as the program runs. ctx only bounds
// the launch: the process outlives it. An app with a fixed upstream on
// which something already accepts connections is not started (see
// checkUpstreamFree): the error wraps lifecycle.ErrUpstreamInUse.
func (d *Driver) Start(ctx context.Context, req lifecycle.StartRequest) (lifecycle.Process, error) {
	name := req.Spec.Name
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("starting app %q: %w", name, err)
	}
	if len(req.Spec.Command) == 0 {
		return nil, fmt.Errorf("starting app %q: empty command", name)
	}
	if req.Spec.Upstream != "" {
		if err := checkUpstreamFree(ctx, name, req.Spec.Upstream); err != nil {
			return nil, err
		}
	}
	path, err := findProgram(req.Spec.Command[0], req.Spec.Dir, req.Env)
	if err != nil {
		return nil, fmt.Errorf("starting app %q: %w", name, err)
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        req.Spec.Command,
		Dir:         req.Spec.Dir,
		Env:         req.Env,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := applyGuards(cmd, req.Spec); err != nil {
		return nil, fmt.Errorf("starting app %q: %w", name, err)
	}
	if cmd.Env == nil {
		// A nil Env would mean the daemon's environment; the contract is
		// that req.Env is the whole environment.
		cmd.Env = []string{}
	}
	if req.Log != nil {
		// The file itself, not a pipe: a background process that keeps the
		// output open must not keep Wait from returning.
		cmd.Stdout = req.Log
		cmd.Stderr = req.Log
	}
	passSockets(cmd, req)

	// Start and register under the lock, so that Close cannot slip between
	// the two and leave a group nobody kills.
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("starting app %q: driver closed", name)
	}
	if err := d.ensureReaperLocked(); err != nil {
		return nil, fmt.Errorf("starting app %q: %w", name, err)
	}
	pid, wait, err := d.launchLocked(cmd)
	if err != nil {
		return nil, fmt.Errorf("starting app %q: %w", name, err)
	}
	p := &process{
		driver: d,
		logger: d.logger.With("app", name, "pid", pid),
		wait:   wait,
		pid:    pid,
		done:   make(chan struct{}),
	}
	d.registerLocked(p)
	d.writeRecordLocked(p, name, path, req.Spec.StopSignal, req.Spec.StopTimeout)
	d.wg.Add(1)
	go p.watch()
	p.logger.Debug("process started", "command", req.Spec.Command)
	return p, nil
}

// Close kills every process group still running, ends the reaper and waits
// for all of the driver's goroutines. Starts after Close fail.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.wg.Wait()
		return nil
	}
	d.closed = true
	for _, p := range d.groups {
		p.kill()
	}
	r := d.reaper
	d.reaper = nil
	d.mu.Unlock()
	if r != nil {
		r.close()
	}
	d.wg.Wait()
	return nil
}

// process is one started program: the leader of its process group.
type process struct {
	driver *Driver
	logger *slog.Logger
	wait   func() error // waits for the leader's exit (exec.Cmd.Wait's words)
	pid    int          // also the pgid
	done   chan struct{}

	// stopMu serialises Stop calls.
	stopMu sync.Mutex

	// mu guards the fields below.
	mu       sync.Mutex
	err      error
	stopping bool      // a Stop is in progress: it, not watch, decides when to kill
	killedAt time.Time // when SIGKILL was first sent to the group
	gone     bool      // the group has no live member: its pgid may be reused
}

// Pid returns the pid of the group leader.
func (p *process) Pid() int { return p.pid }

// Done is closed once the leader has exited and its group is empty.
func (p *process) Done() <-chan struct{} { return p.done }

// Err returns the leader's exit error once Done is closed, nil before.
func (p *process) Err() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stop signals the process group with sig (SIGTERM when 0), waits up to
// timeout for the leader to exit and the group to empty, then kills the
// group and waits for it. It is safe to call more than once and after the
// process exited.
func (p *process) Stop(sig syscall.Signal, timeout time.Duration) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	select {
	case <-p.done:
		return nil
	default:
	}
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	p.mu.Lock()
	p.stopping = true
	var err error
	if !p.gone {
		err = syscall.Kill(-p.pid, sig)
	}
	p.mu.Unlock()
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		// Go on to SIGKILL: maybe that works, and Stop must not leave the
		// group behind.
		p.logger.Warn("signalling process group", "signal", sig, "err", err)
		timeout = 0
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	p.logger.Info("stop timeout over, killing process group", "timeout", timeout)
	p.kill()
	<-p.done
	return nil
}

// kill sends SIGKILL to the whole group unless it is already gone.
func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return
	}
	if p.killedAt.IsZero() {
		p.killedAt = time.Now()
	}
	// Under the lock: watch marks the group gone under it too, so a pgid
	// that may have been reused is never signalled.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
}

// watch waits for the leader to exit, makes sure nothing of its group
// survives it, unregisters the group and closes done.
func (p *process) watch() {
	defer p.driver.wg.Done()
	err := p.wait()
	p.mu.Lock()
	p.err = err
	stopping := p.stopping
	p.mu.Unlock()
	if !stopping && groupAlive(p.pid) {
		// The leader ended on its own: like systemd with its control group,
		// take down what it left behind. During a Stop the rest of the group
		// gets its full stop timeout instead.
		p.logger.Info("leader exited, killing the rest of its process group")
		p.kill()
	}
	p.waitGroupGone()
	p.driver.unregister(p)
	p.logger.Debug("process exited", "err", err)
	close(p.done)
}

// waitGroupGone polls until the group has no live member, or until killGrace
// after SIGKILL.
func (p *process) waitGroupGone() {
	interval := groupPollMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for groupAlive(p.pid) {
		p.mu.Lock()
		killedAt := p.killedAt
		p.mu.Unlock()
		if !killedAt.IsZero() && time.Since(killedAt) > killGrace {
			p.logger.Error("process group survives SIGKILL; giving up on it", "pgid", p.pid)
			break
		}
		timer.Reset(interval)
		<-timer.C
		interval = min(interval*2, groupPollMax)
	}
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
}

// groupAlive reports whether process group pgid has a member that is not a
// zombie. Zombies count as gone: orphans are reparented to init, which on
// some machines (containers, micro-VMs) never reaps them, and a zombie holds
// nothing but its pid.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	alive, err := liveMember(pgid)
	if err != nil {
		// Without /proc, trust kill: better wait for a zombie than miss a
		// live process.
		return true
	}
	return alive
}

// liveMember scans /proc for a process of group pgid that is not a zombie.
func liveMember(pgid int) (bool, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false, err
	}
	want := []byte(strconv.Itoa(pgid))
	for _, e := range entries {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 3 || !bytes.Equal(f[2], want) {
			continue
		}
		if state := f[0][0]; state != 'Z' && state != 'X' {
			return true, nil
		}
	}
	return false, nil
}

// findProgram resolves the program name as the app's environment would: a
// name with a slash is taken relative to dir, any other is searched in the
// environment's PATH (relative PATH entries again relative to dir).
func findProgram(name, dir string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		if err := checkExecutable(path); err != nil {
			return "", &exec.Error{Name: name, Err: err}
		}
		return path, nil
	}
	search, ok := lookupEnv(env, "PATH")
	if !ok {
		search = defaultPath
	}
	for _, entry := range filepath.SplitList(search) {
		if entry == "" {
			entry = "."
		}
		if !filepath.IsAbs(entry) {
			entry = filepath.Join(dir, entry)
		}
		path := filepath.Join(entry, name)
		if checkExecutable(path) == nil {
			return path, nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}

// checkExecutable returns nil when path is a regular file with an execute
// bit.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// lookupEnv returns the last value of key in env, as the program will see it.
func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
