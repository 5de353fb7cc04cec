package execdriver

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// reaperScript runs in /bin/sh as the reaper. It reads "+KEY" and "-KEY"
// lines on stdin, KEY a process group's id or the name of a cgroup in the
// subtree $1, and keeps the set of registered keys in a variable, with
// shell builtins only (no process to fork while the machine may be short of
// everything). Stdin's write end is held by the daemon alone, so EOF means the
// daemon is gone (or closed the driver): then it kills every group still
// registered and exits (through cgroup.kill, or each member of the cgroup on
// kernels without it). It ignores the signals a terminal or a careless
// "kill the daemon's group" would send, since it must outlive the daemon.
// (Parent-death signals are no substitute: they fire per thread and are not
// inherited by grandchildren.) It says "ready" once its traps are set, so
// that no signal can catch it before.
const reaperScript = `trap '' INT TERM HUP
echo ready
exec >/dev/null
g=' '
while read -r l; do
	n=${l#?}
	case $n in
	''|0|1|[!a-z0-9]*|*[!a-z0-9_@-]*) continue ;;
	*@*) ;;
	*[!0-9]*) continue ;;
	esac
	case $l in
	+*) case $g in *" $n "*) ;; *) g="$g$n " ;; esac ;;
	-*) case $g in *" $n "*) g="${g%% $n *} ${g#* $n }" ;; esac ;;
	esac
done
for n in $g; do
	case $n in
	*@*) echo 1 >"$1/$n/cgroup.kill" || while read -r p; do kill -9 "$p"; done <"$1/$n/cgroup.procs" ;;
	*) kill -9 -$n ;;
	esac 2>/dev/null
done
`

// defaultReaperMinLife is how long a reaper must have lived for its death to
// be answered by an immediate restart; a reaper that dies faster is restarted
// at the next Start instead, so a broken /bin/sh cannot make a hot loop.
const defaultReaperMinLife = time.Second

// reaper is the running helper process.
type reaper struct {
	cmd     *exec.Cmd
	w       *os.File // stdin's write end: only this process holds it
	started time.Time
	exited  chan struct{}
}

// startReaper launches the reaper in its own process group and returns once
// it ignores signals. subtree is the cgroup subtree the keys it is sent
// name groups in ("" without cgroups).
func startReaper(subtree string) (*reaper, error) {
	// Close-on-exec pipes: no app inherits the write end of stdin.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting reaper: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("starting reaper: %w", err)
	}
	defer outR.Close()
	cmd := exec.Command("/bin/sh", "-c", reaperScript, "dynapm-reaper", subtree)
	cmd.Stdin = inR
	cmd.Stdout = outW
	cmd.Dir = "/"
	cmd.Env = []string{"LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		return nil, fmt.Errorf("starting reaper: %w", err)
	}
	buf := make([]byte, len("ready\n"))
	if _, err := io.ReadFull(outR, buf); err != nil || string(buf) != "ready\n" {
		inW.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("starting reaper: no ready line (%q, %v)", buf, err)
	}
	return &reaper{cmd: cmd, w: inW, started: time.Now(), exited: make(chan struct{})}, nil
}

// send writes one "+KEY" or "-KEY" line. Lines are far below PIPE_BUF, so
// each write is atomic.
func (r *reaper) send(op byte, key string) error {
	_, err := r.w.Write([]byte(string(op) + key + "\n"))
	return err
}

// close gives the reaper EOF, which makes it kill what is still registered
// and exit, and waits for that.
func (r *reaper) close() {
	r.w.Close()
	<-r.exited
}

// ensureReaperLocked starts the reaper unless it runs, registering every live
// group with a new one. d.mu must be held.
func (d *Driver) ensureReaperLocked() error {
	if d.reaper != nil {
		return nil
	}
	subtree := ""
	if d.sub != nil {
		subtree = d.sub.Path()
	}
	r, err := startReaper(subtree)
	if err != nil {
		return err
	}
	d.reaper = r
	d.wg.Add(1)
	go d.watchReaper(r)
	for _, p := range d.groups {
		if err := r.send('+', p.box.reaperKey()); err != nil {
			d.logger.Warn("registering process group with reaper", "pgid", p.pid, "err", err)
		}
	}
	for pgid, job := range d.tracked {
		if err := r.send('+', job.box.reaperKey()); err != nil {
			d.logger.Warn("registering process group with reaper", "pgid", pgid, "err", err)
		}
	}
	d.logger.Debug("reaper started", "pid", r.cmd.Process.Pid, "groups", len(d.groups), "tracked", len(d.tracked))
	return nil
}

// watchReaper waits for the reaper to exit and, unless the driver closed it,
// starts a new one.
func (d *Driver) watchReaper(r *reaper) {
	defer d.wg.Done()
	err := r.cmd.Wait()
	close(r.exited)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.reaper != r {
		return
	}
	d.logger.Warn("reaper exited; restarting it", "err", err)
	d.reaper = nil
	r.w.Close()
	if time.Since(r.started) < d.reaperMinLife {
		d.logger.Error("reaper died right after start; the next start retries")
		return
	}
	if err := d.ensureReaperLocked(); err != nil {
		d.logger.Error("restarting reaper", "err", err)
	}
}

// registerLocked records a new group and tells the reaper. d.mu must be held.
func (d *Driver) registerLocked(p *process) {
	d.groups[p.pid] = p
	if d.reaper == nil {
		return
	}
	if err := d.reaper.send('+', p.box.reaperKey()); err != nil {
		// The reaper died; watchReaper restarts it and registers every group.
		d.logger.Warn("registering process group with reaper", "pgid", p.pid, "err", err)
	}
}

// unregister forgets a group that has no live member left, so that the
// reaper never kills a group that reuses its pgid.
func (d *Driver) unregister(p *process) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.groups[p.pid] == p {
		delete(d.groups, p.pid)
		d.removeRecordLocked(p.box)
	}
	if d.reaper == nil {
		return
	}
	if err := d.reaper.send('-', p.box.reaperKey()); err != nil {
		d.logger.Debug("unregistering process group with reaper", "pgid", p.pid, "err", err)
	}
}
