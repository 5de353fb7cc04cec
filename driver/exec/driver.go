// Package execdriver is the exec driver, DynaPM's own way to run an app
// (driver: exec, the default): the app's command runs as a child process
// in a process group of its own and, where cgroup v2 is usable, born in a
// cgroup of its own (UseCgroups), so that a stop reaches everything the
// program started, even what called setsid. Without cgroups the daemon is
// the child subreaper and takes such orphans back (UseSubreaper,
// orphans.go). It implements lifecycle.Driver; the lifecycle Manager owns
// states, readiness and timing.
//
// Nothing of an app outlives the daemon: a helper process, the reaper
// (reaper.go), kills every cgroup or group still registered when the
// daemon dies, even by SIGKILL, and the next daemon stops what a dead
// reaper left (stale.go): every cgroup in its subtree, or the process
// groups it recorded in the state directory. Scheduled jobs get the same
// guard (track.go). Programs are forked by the daemon, or by the spawner
// helper (package spawner) once it holds many descriptors.
package execdriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/driver/exec/cgroup"
	"github.com/dynapm/dynapm/driver/exec/listenpid"
	"github.com/dynapm/dynapm/driver/exec/spawner"
	"github.com/dynapm/dynapm/lifecycle"
)

// Interface guard.
var (
	_ lifecycle.Driver       = (*Driver)(nil)
	_ lifecycle.AppForgetter = (*Driver)(nil)
)

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
	// leftTimeout: how long StopLeftGroups waits after SIGTERM (tests
	// shorten it).
	leftTimeout time.Duration
	// runDir, when set, holds a record of each live group (stale.go).
	runDir string
	// sub, when set, is the cgroup subtree the programs run in.
	sub *cgroup.Subtree
	// sigchld, when set, wakes the reaping of orphans (UseSubreaper).
	sigchld chan os.Signal

	// mu guards everything below.
	mu     sync.Mutex
	closed bool
	reaper *reaper
	// groups holds the live process groups by pgid (the leader's pid), from
	// Start until the group has no live member left.
	groups map[int]*process
	// tracked holds the groups started by StartGroup (scheduled jobs), by
	// pgid, with their app's name.
	tracked map[int]*trackedJob
	// spares holds a box with its cgroup made ahead for the next start of
	// an app's instance, by app (makeSpare); one without a group is being
	// made. spareSeq numbers them; noSpares: none is made any more
	// (StopSpares).
	spares   map[string]*box
	spareSeq uint64
	noSpares bool
	// devNull is /dev/null, opened once, every program's stdin: os/exec
	// would open and register it again for each start.
	devNull *os.File

	// spawner, when set, starts the programs (see UseSpawner); nil once
	// its helper is gone.
	spawner *spawner.Client
	// listenPIDByShell: handed-off programs get LISTEN_PID from a shell,
	// not by a traced start (listenpid.go): tracing proved not permitted,
	// or a test forces the fallback.
	listenPIDByShell bool
	// shellStarts counts the programs started through that shell.
	shellStarts int

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

// launchLocked starts app name's cmd, through the spawner when there is
// one, and returns the pid and the function that waits for its exit.
// listenPID:
// the program is handed sockets and must find its pid in LISTEN_PID,
// set by a traced start (listenpid.go) or, where that is not to be, by
// the shell. d.mu must be held.
func (d *Driver) launchLocked(name string, cmd *exec.Cmd, listenPID bool) (int, func() error, error) {
	if listenPID && (d.listenPIDByShell || gainsPrivileges(cmd.Path)) {
		d.shellStarts++
		wrapInShell(cmd)
		listenPID = false
	}
	if files, ok := cmdFiles(cmd); ok && d.spawner != nil {
		pid, wait, err := d.spawnLocked(cmd, files, listenPID)
		switch {
		case err == nil:
			return pid, wait, nil
		case errors.Is(err, spawner.ErrClosed):
			d.logger.Warn("the spawner helper is gone; starting programs from the daemon", "app", name, "err", err)
			d.spawner = nil
		case errors.Is(err, spawner.ErrRefused):
			// Nothing was forked: more descriptors than the helper
			// takes, which the daemon's own fork does not mind.
			d.logger.Debug("the spawner helper cannot take the program; starting it from the daemon", "app", name, "err", err)
		case listenPID:
			// The daemon tells a refused trace from the program's own
			// error, and falls back to the shell.
			d.logger.Debug("the spawner helper's traced start failed; starting the program from the daemon", "app", name, "err", err)
		default:
			return 0, nil, err
		}
	}
	// The daemon's own fork only: the helper opens its own /dev/null, and
	// each descriptor sent to it counts against what it takes.
	if null := d.devNullLocked(); cmd.Stdin == nil && null != nil {
		cmd.Stdin = null
	}
	if listenPID {
		return d.startListeningLocked(name, cmd)
	}
	if err := startWatched(cmd); err != nil {
		return 0, nil, err
	}
	return cmd.Process.Pid, cmd.Wait, nil
}

// devNullLocked returns /dev/null open for reading, nil when it cannot be
// opened (os/exec then tries itself). d.mu must be held.
func (d *Driver) devNullLocked() *os.File {
	if d.devNull == nil {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil
		}
		d.devNull = f
	}
	return d.devNull
}

// spawnLocked starts cmd through the spawner helper with files as its
// descriptors. d.mu must be held.
func (d *Driver) spawnLocked(cmd *exec.Cmd, files []*os.File, listenPID bool) (int, func() error, error) {
	req, err := spawnRequest(cmd)
	if err != nil {
		return 0, nil, err
	}
	req.ListenPID = listenPID
	cgroupFD := -1
	if cmd.SysProcAttr.UseCgroupFD {
		cgroupFD = cmd.SysProcAttr.CgroupFD
	}
	ch, err := d.spawner.SpawnFiles(req, files, cgroupFD)
	if err != nil {
		return 0, nil, err
	}
	return ch.Pid, ch.Wait, nil
}

// cmdFiles returns cmd's descriptors 0, 1, 2, ... (nil: /dev/null), as
// the spawner helper takes them, unless a standard one is not a file.
func cmdFiles(cmd *exec.Cmd) ([]*os.File, bool) {
	files := make([]*os.File, 0, 3+len(cmd.ExtraFiles))
	for _, s := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		f, ok := s.(*os.File)
		if !ok && s != nil {
			return nil, false
		}
		files = append(files, f)
	}
	return append(files, cmd.ExtraFiles...), true
}

// startListeningLocked starts app name's cmd from the daemon with LISTEN_PID set to
// the program's pid: traced (startTraced) or, where tracing fails, through
// the shell. d.mu must be held.
func (d *Driver) startListeningLocked(name string, cmd *exec.Cmd) (int, func() error, error) {
	shell := *cmd // before Start: a started Cmd must not be copied
	err := startTraced(cmd)
	var te *listenpid.Error
	switch {
	case err == nil:
		return cmd.Process.Pid, cmd.Wait, nil
	case errors.As(err, &te):
		d.logger.Warn("starting the program through a shell", "app", name, "err", err)
		d.listenPIDByShell = te.Lasting
	case traceRefused(err) && !traceWorks():
		d.logger.Warn("tracing a program at its start is not permitted here: handed-off programs get LISTEN_PID from a shell, about a millisecond slower", "app", name, "err", err)
		d.listenPIDByShell = true
	default:
		return 0, nil, err
	}
	d.shellStarts++
	wrapInShell(&shell)
	if err := startWatched(&shell); err != nil {
		return 0, nil, err
	}
	return shell.Process.Pid, shell.Wait, nil
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
		leftTimeout:   killGrace,
		groups:        make(map[int]*process),
		tracked:       make(map[int]*trackedJob),
	}
}

// Start launches req.Spec.Command in a new process group, with req.Env as its
// whole environment, req.Spec.Dir as working directory, and stdout and stderr
// going to req.Log. It returns as soon as the program runs. ctx only bounds
// the launch: the process outlives it. An app with a fixed upstream on
// which something already accepts connections is not started (see
// checkUpstreamFree): the error wraps lifecycle.ErrUpstreamInUse.
func (d *Driver) Start(ctx context.Context, req lifecycle.StartRequest) (lifecycle.Process, error) {
	// The caller names the app in its errors: these say what only the
	// driver knows.
	name := req.Spec.Name
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(req.Spec.Command) == 0 {
		return nil, errors.New("empty command")
	}
	// A socket file's program replaces a stale file itself, as it must
	// after a crash; only ports are checked.
	if req.Spec.Upstream != "" && req.Spec.UnixUpstream() == "" {
		if err := checkUpstreamFree(ctx, req.Spec.Upstream); err != nil {
			return nil, err
		}
		if _, udp := req.Spec.Protocols(); udp {
			if err := checkUDPUpstreamFree(name, req.Spec.Upstream); err != nil {
				return nil, err
			}
		}
	}
	path, err := FindProgram(req.Spec.Command[0], req.Spec.Dir, req.Env)
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        req.Spec.Command,
		Dir:         req.Spec.Dir,
		Env:         req.Env,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := applyGuards(cmd, req.Spec); err != nil {
		return nil, err
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
	listenPID := passSockets(cmd, req)

	// Start and register under the lock, so that Close cannot slip between
	// the two and leave a group nobody kills.
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("driver closed")
	}
	if err := d.ensureReaperLocked(); err != nil {
		return nil, err
	}
	proto := *cmd // not started: what a second try starts from
	b, pid, wait, err := d.launchInBoxLocked(name, path, cmd, listenPID, req.Spec)
	if err != nil && b.spareSeq != 0 {
		// The cgroup made ahead may be gone (an admin's rmdir of empty
		// leftovers): once more in a new one.
		d.logger.Debug("starting in the cgroup made ahead failed; trying a new one", "app", name, "err", err)
		cmd = cloneCmd(&proto)
		b, pid, wait, err = d.launchInBoxLocked(name, path, cmd, listenPID, req.Spec)
	}
	if err != nil {
		if cred := cmd.SysProcAttr.Credential; cred != nil {
			// exec says "permission denied" and seems to blame the
			// program when the user cannot enter the directory.
			if enterErr := CheckEnter(cred, req.Spec.User, cmd.Dir); enterErr != nil {
				return nil, enterErr
			}
		}
		return nil, err
	}
	b.pgid = pid
	p := &process{
		driver: d,
		app:    name,
		logger: d.logger.With("app", name, "pid", pid),
		wait:   wait,
		pid:    pid,
		box:    b,
		done:   make(chan struct{}),
		killed: make(chan struct{}),
	}
	d.registerLocked(p)
	d.recordLocked(b, name, path, req.Spec.StopSignal, req.Spec.StopTimeout)
	d.wg.Add(1)
	go p.watch()
	p.logger.Debug("process started", "command", req.Spec.Command)
	if b.memory {
		return memProcess{p}, nil
	}
	return p, nil
}

// launchInBoxLocked starts cmd in a new box (newBoxLocked) and records
// it; on failure the box is gone, and b is returned only for its
// spareSeq: whether it was made ahead. d.mu must be held.
func (d *Driver) launchInBoxLocked(name, path string, cmd *exec.Cmd, listenPID bool, spec *appfile.Spec) (b *box, pid int, wait func() error, err error) {
	b, err = d.newBoxLocked(cmd, name, 'i', spec.MemoryMax)
	if err != nil {
		if b == nil {
			b = &box{}
		}
		return b, 0, nil, err
	}
	d.recordLocked(b, name, path, spec.StopSignal, spec.StopTimeout)
	pid, wait, err = d.launchLocked(name, cmd, listenPID)
	if err != nil {
		d.removeRecordLocked(b)
		if b.release() != nil && b.group != nil {
			_ = b.group.Close() // removed already, or not removable
		}
		return b, 0, nil, err
	}
	return b, pid, wait, nil
}

// cloneCmd copies cmd, not started, sharing nothing that a start or
// newBoxLocked changes in place.
func cloneCmd(cmd *exec.Cmd) *exec.Cmd {
	c := *cmd
	c.Env = slices.Clone(cmd.Env)
	c.Args = slices.Clone(cmd.Args)
	sys := *cmd.SysProcAttr
	c.SysProcAttr = &sys
	return &c
}

// memProcess is a process whose cgroup has the memory controller: its
// memory is the cgroup's memory.current (lifecycle.MemoryReporter), not
// the RSS of a process tree.
type memProcess struct{ *process }

var _ lifecycle.MemoryReporter = memProcess{}

// MemoryBytes returns the cgroup's memory.current.
func (p memProcess) MemoryBytes(context.Context) (uint64, error) {
	return p.box.group.MemoryCurrent()
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
	if d.sigchld != nil {
		signal.Stop(d.sigchld)
		close(d.sigchld)
	}
	d.mu.Unlock()
	if r != nil {
		r.close()
	}
	d.wg.Wait()
	// No spare is made once closed.
	d.mu.Lock()
	spares := d.spares
	d.spares = nil
	if d.devNull != nil {
		d.devNull.Close()
		d.devNull = nil
	}
	d.mu.Unlock()
	for app, b := range spares {
		if err := b.release(); err != nil {
			d.logger.Warn("removing a cgroup made ahead of a start", "app", app, "err", err)
		}
	}
	return nil
}

// process is one started program: the leader of its process group.
type process struct {
	driver *Driver
	app    string
	logger *slog.Logger
	wait   func() error // waits for the leader's exit (exec.Cmd.Wait's words)
	pid    int          // also the pgid
	box    *box
	done   chan struct{}
	killed chan struct{} // closed at the first kill

	// stopMu serialises Stop calls.
	stopMu sync.Mutex

	// mu guards the fields below.
	mu       sync.Mutex
	err      error
	stopping bool      // a Stop is in progress: it, not watch, decides when to kill
	killedAt time.Time // when SIGKILL was first sent to the group
	gone     bool      // the group has no live member: its pgid may be reused
	// stopKilled: the last Stop ended in a kill after its timeout.
	stopKilled bool
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
// timeout for the leader to exit and its cgroup (or group and orphans) to
// empty, then kills them all and waits for them. It is safe to call more
// than once and after the process exited.
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
	p.logger.Info("stop timeout over, killing the app's processes", "timeout", timeout)
	p.mu.Lock()
	p.stopKilled = true
	p.mu.Unlock()
	p.kill()
	<-p.done
	return nil
}

// KilledAfterTimeout reports whether the last Stop ended in a kill once its
// timeout was over (lifecycle.KillReporter).
func (p *process) KilledAfterTimeout() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopKilled
}

// kill sends SIGKILL to everything of the program unless it is already
// gone.
func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return
	}
	if p.killedAt.IsZero() {
		p.killedAt = time.Now()
		close(p.killed)
	}
	// Under the lock: watch marks the group gone under it too, so a pgid
	// that may have been reused is never signalled.
	if err := p.box.kill(); err != nil {
		p.logger.Warn("killing the app's processes", "err", err)
	}
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
	if !stopping && p.box.alive() {
		// The leader ended on its own: like systemd with its control group,
		// take down what it left behind. During a Stop the rest gets its
		// full stop timeout instead.
		p.logger.Info("leader exited, killing the rest of its processes")
		p.kill()
	}
	p.waitGroupGone()
	if !stopping && p.box.oomKilled() {
		// Ended by the kernel at memory.max (memory_max): a stop, reason
		// memory, not a crash.
		p.mu.Lock()
		p.err = fmt.Errorf("%w (%v)", lifecycle.ErrMemoryKilled, p.err)
		p.mu.Unlock()
	}
	if err := p.box.release(); err != nil {
		p.logger.Warn("removing the app's cgroup", "err", err)
	}
	p.driver.unregister(p)
	p.logger.Debug("process exited", "err", err)
	spare, evicted := p.driver.reserveSpare(p.app)
	close(p.done)
	p.driver.makeSpare(p.app, spare, evicted)
}

// waitGroupGone waits until nothing of the program is left, or until
// killGrace after SIGKILL.
func (p *process) waitGroupGone() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.killed:
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(killGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := p.box.waitGone(ctx); err != nil {
		p.logger.Error("the app's processes survive SIGKILL; giving up on them", "pgid", p.pid, "err", err)
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

// lookupEnv returns the last value of key in env, as the program will see it.
func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
