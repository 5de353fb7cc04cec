package dockerdriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/lifecycle"
)

// ContainerDriver runs driver: docker apps. It satisfies lifecycle.Driver,
// lifecycle.RunningChecker and lifecycle.OutsideStartWatcher; its
// Processes satisfy lifecycle.ReadyChecker and lifecycle.MemoryReporter.
type ContainerDriver struct {
	cfg Config
	c   *client

	mu      sync.Mutex
	adopter lifecycle.Adopter
	apps    map[string]*knownApp // by app name; see outside.go
	closed  bool
	// The watch of container starts (outside.go): watchReady is closed
	// once its first subscription was answered, watchCancel ends it,
	// watchWG counts its goroutines.
	watchReady  chan struct{}
	watchCancel context.CancelFunc
	watchWG     sync.WaitGroup
}

// NewContainerDriver returns the docker driver. It does not contact the
// engine: an unreachable engine is reported when an app starts.
func NewContainerDriver(cfg Config) *ContainerDriver {
	cfg.defaults()
	return &ContainerDriver{cfg: cfg, c: newClient(cfg.Host), apps: make(map[string]*knownApp)}
}

// Start starts the app's containers in order and returns once the engine
// has started them (readiness is the Manager's probe, gated by Ready). The
// events of the containers are followed from before the first start, so a
// container that dies at once is noticed.
func (d *ContainerDriver) Start(ctx context.Context, req lifecycle.StartRequest) (lifecycle.Process, error) {
	spec := req.Spec
	if len(spec.Containers) == 0 {
		return nil, errors.New("driver: docker needs container names")
	}
	stopSig, err := d.stopSignal(ctx, spec.StopSignal)
	if err != nil {
		return nil, explain("container", spec.Containers[0], err)
	}
	p := &containerProcess{
		driver: d,
		app:    spec.Name,
		log:    d.cfg.Logger.With("app", spec.Name),
		names:  make(map[string]string),
		killed: make(map[string]bool),
		port:   upstreamPort(req.Upstream),
	}
	var wasRunning []bool
	for _, name := range spec.Containers {
		info, err := d.c.inspectContainer(ctx, name)
		if err != nil {
			return nil, explain("container", name, err)
		}
		p.ids = append(p.ids, info.ID)
		p.names[info.ID] = name
		wasRunning = append(wasRunning, info.State.Running)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	w := &watch{
		c:   d.c,
		log: p.log,
		filter: map[string][]string{
			"type":      {"container"},
			"container": p.ids,
			"event":     {"die", "kill", "oom"},
		},
		delay:   d.cfg.ReconnectDelay,
		onEvent: p.onEvent,
		onGap:   p.onGap,
	}
	if err := w.start(p.ctx, &p.wg); err != nil {
		p.cancel()
		return nil, explain("container", spec.Containers[0], fmt.Errorf("following events: %w", err))
	}
	// Known as DynaPM's before the containers start: their start events
	// are not someone else's.
	d.ensureWatch(ctx)
	d.learn(spec, p.ids, p)
	for i, id := range p.ids {
		if err := d.c.startContainer(ctx, id); err != nil {
			// Put back what this start changed: stop the containers it
			// started, newest first.
			for j := i - 1; j >= 0; j-- {
				if !wasRunning[j] {
					_ = d.c.stopContainer(context.Background(), p.ids[j], stopSig, timeoutSeconds(spec.StopTimeout))
				}
			}
			p.cancel()
			p.wg.Wait()
			d.forget(spec.Name, p)
			return nil, explain("container", spec.Containers[i], err)
		}
	}
	if info, err := d.c.inspectContainer(ctx, p.ids[0]); err == nil {
		p.pid = info.State.Pid
	}
	return p, nil
}

// errStopSignal: the engine cannot stop a container with the app's
// stop_signal (its API is older than signalAPI).
var errStopSignal = errors.New("the Docker Engine cannot stop a container with a chosen signal")

// stopSignal returns the signal the engine's stop is to send for an app's
// stop_signal sig: 0, the container's own (its STOPSIGNAL, SIGTERM
// unless the image or docker create says otherwise), for the default
// SIGTERM; sig otherwise, which an engine older than signalAPI cannot
// send (errStopSignal).
func (d *ContainerDriver) stopSignal(ctx context.Context, sig syscall.Signal) (syscall.Signal, error) {
	if sig == 0 || sig == syscall.SIGTERM {
		return 0, nil
	}
	v, err := d.c.apiVersion(ctx)
	if err != nil {
		return 0, err
	}
	if !apiAtLeast(v, signalAPI) {
		return 0, fmt.Errorf("%w: it speaks API %s, and stop_signal %v (%d) needs %s (Docker 23 or later)", errStopSignal, v, sig, int(sig), signalAPI)
	}
	return sig, nil
}

// Running reports whether every container of spec runs. From then on,
// the driver watches for someone else starting them (outside.go).
func (d *ContainerDriver) Running(ctx context.Context, spec *appfile.Spec) (bool, error) {
	d.ensureWatch(ctx)
	running, ids, err := d.running(ctx, spec)
	if err != nil {
		return false, err
	}
	d.learn(spec, ids, nil)
	return running, nil
}

// running reports whether every container of spec runs, with the ids the
// containers resolve to.
func (d *ContainerDriver) running(ctx context.Context, spec *appfile.Spec) (bool, []string, error) {
	all := len(spec.Containers) > 0
	ids := make([]string, 0, len(spec.Containers))
	for _, name := range spec.Containers {
		info, err := d.c.inspectContainer(ctx, name)
		if err != nil {
			return false, nil, explain("container", name, err)
		}
		ids = append(ids, info.ID)
		all = all && info.State.Running
	}
	return all, ids, nil
}

// containerProcess is one started container app.
type containerProcess struct {
	driver *ContainerDriver
	app    string
	log    *slog.Logger
	ids    []string          // in start order
	names  map[string]string // id -> name as in the app file
	pid    int
	port   int // the upstream's port

	ctx    context.Context // ends the event watch
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	killed   map[string]bool // a kill event came before the die; guarded by mu
	oom      map[string]bool
	stopping bool

	// ExitState is Done, closed when one of the containers dies or after
	// Stop, and Err: why a container died, lifecycle.ErrStoppedOutside when
	// someone stopped or killed it, an exit code otherwise; nil after Stop.
	lifecycle.ExitState

	stopOnce sync.Once
	stopErr  error
}

// Pid is the host pid of the first container's main process at start.
func (p *containerProcess) Pid() int { return p.pid }

// onEvent handles the die, kill and oom events of the app's containers.
func (p *containerProcess) onEvent(e event) {
	id := e.Actor.ID
	name := p.names[id]
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Action {
	case "kill":
		p.killed[id] = true
	case "oom":
		if p.oom == nil {
			p.oom = make(map[string]bool)
		}
		p.oom[id] = true
	case "die":
		if p.stopping {
			return
		}
		code := e.Actor.Attributes["exitCode"]
		switch {
		case p.oom[id]:
			p.Finish(fmt.Errorf("container %q was killed by the kernel's OOM killer (exit code %s)", name, code))
		case p.killed[id]:
			p.Finish(fmt.Errorf("container %q was stopped (exit code %s): %w", name, code, lifecycle.ErrStoppedOutside))
		default:
			p.Finish(fmt.Errorf("container %q: exit code %s", name, code))
		}
	}
}

// onGap looks at the containers after the event stream broke.
func (p *containerProcess) onGap(ctx context.Context) {
	for _, id := range p.ids {
		info, err := p.driver.c.inspectContainer(ctx, id)
		if err != nil {
			if errors.Is(err, errNotFound) {
				p.mu.Lock()
				if !p.stopping {
					p.Finish(fmt.Errorf("container %q was removed: %w", p.names[id], lifecycle.ErrStoppedOutside))
				}
				p.mu.Unlock()
			}
			continue
		}
		if !info.State.Running {
			p.mu.Lock()
			if !p.stopping {
				p.Finish(fmt.Errorf("container %q is not running: %w", p.names[id], lifecycle.ErrStoppedOutside))
			}
			p.mu.Unlock()
		}
	}
}

// Ready reports whether every container runs and, for those with a
// healthcheck, is healthy; a container without one that publishes the
// upstream's port must accept connections on its own address (see
// listensInside) before the Manager's probe of the upstream counts.
func (p *containerProcess) Ready(ctx context.Context) (bool, error) {
	for _, id := range p.ids {
		info, err := p.driver.c.inspectContainer(ctx, id)
		if err != nil {
			return false, explain("container", p.names[id], err)
		}
		if !info.State.Running {
			return false, fmt.Errorf("container %q is %s", p.names[id], info.State.Status)
		}
		if h := info.State.Health; h != nil {
			switch h.Status {
			case "healthy":
				continue
			case "unhealthy":
				return false, fmt.Errorf("container %q is unhealthy", p.names[id])
			}
			return false, nil
		}
		if ok, err := listensInside(ctx, info, p.port); !ok {
			if err != nil {
				err = fmt.Errorf("container %q: %w", p.names[id], err)
			}
			return false, err
		}
	}
	return true, nil
}

// MemoryBytes sums the containers' memory as the engine counts it.
func (p *containerProcess) MemoryBytes(ctx context.Context) (uint64, error) {
	var total uint64
	for _, id := range p.ids {
		n, err := p.driver.c.containerMemory(ctx, id)
		if err != nil {
			return 0, explain("container", p.names[id], err)
		}
		total += n
	}
	return total, nil
}

// Stop stops the containers in reverse order with sig (the app's
// stop_signal; the default SIGTERM means each container's own, see
// stopSignal) and SIGKILL after timeout. Safe to call more than once.
func (p *containerProcess) Stop(sig syscall.Signal, timeout time.Duration) error {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), timeout+stopCallGrace)
		defer cancel()
		engineSig, err := p.driver.stopSignal(ctx, sig)
		if err != nil {
			// Start refused such a stop_signal; a reload changed it since.
			p.log.Warn("stopping the containers with their own stop signal", "err", err)
		}
		var errs []error
		for i := len(p.ids) - 1; i >= 0; i-- {
			id := p.ids[i]
			if err := p.driver.c.stopContainer(ctx, id, engineSig, timeoutSeconds(timeout)); err != nil && !errors.Is(err, errNotFound) {
				errs = append(errs, explain("container", p.names[id], err))
			}
		}
		p.cancel()
		p.wg.Wait()
		p.mu.Lock()
		p.Finish(nil)
		p.mu.Unlock()
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}
