package dockerdriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/lifecycle"
)

// updateRetries bounds the retries of a service update that lost a race
// with another update (the engine refuses an out-of-date version).
const updateRetries = 5

// SwarmDriver runs driver: swarm apps: it scales an existing replicated
// service to replicas on start and to 0 on stop. It satisfies
// lifecycle.Driver and lifecycle.RunningChecker; its Processes satisfy
// lifecycle.ReadyChecker (enough tasks running). Memory is not reported:
// the tasks may run on other nodes.
type SwarmDriver struct {
	cfg Config
	c   *client
}

// NewSwarmDriver returns the swarm driver. It does not contact the engine.
func NewSwarmDriver(cfg Config) *SwarmDriver {
	cfg.defaults()
	return &SwarmDriver{cfg: cfg, c: newClient(cfg.Host)}
}

// scale sets the service's replica count to n. With atLeast, a service
// already at n or more is left alone (someone scaled it up: keep that).
func (d *SwarmDriver) scale(ctx context.Context, name string, n uint64, atLeast bool) (id string, err error) {
	for try := 0; ; try++ {
		svc, err := d.c.inspectService(ctx, name)
		if err != nil {
			return "", err
		}
		cur, replicated, err := serviceMode(svc.Spec)
		if err != nil {
			return svc.ID, err
		}
		if !replicated {
			return svc.ID, errors.New("in global mode: driver: swarm scales replicated services")
		}
		if cur == n || (atLeast && cur > n) {
			return svc.ID, nil
		}
		spec, err := withReplicas(svc.Spec, n)
		if err != nil {
			return svc.ID, err
		}
		err = d.c.updateService(ctx, svc.ID, svc.Version.Index, spec)
		var api *apiError
		if err == nil || !errors.As(err, &api) || !strings.Contains(api.Message, "out of sequence") || try >= updateRetries {
			return svc.ID, err
		}
	}
}

// Start scales the service up to the app's replicas and returns; Ready
// then waits for the tasks to run.
func (d *SwarmDriver) Start(ctx context.Context, req lifecycle.StartRequest) (lifecycle.Process, error) {
	spec := req.Spec
	if spec.Service == "" {
		return nil, errors.New("driver: swarm needs a service name")
	}
	replicas := uint64(max(spec.Replicas, 1))
	p := &serviceProcess{
		driver:   d,
		app:      spec.Name,
		service:  spec.Service,
		replicas: replicas,
		port:     upstreamPort(req.Upstream),
		log:      d.cfg.Logger.With("app", spec.Name, "service", spec.Service),
	}
	svc, err := d.c.inspectService(ctx, spec.Service)
	if err != nil {
		return nil, explain("service", spec.Service, err)
	}
	p.id = svc.ID
	p.ctx, p.cancel = context.WithCancel(context.Background())
	w := &watch{
		c:       d.c,
		log:     p.log,
		filter:  map[string][]string{"type": {"service"}, "service": {svc.ID}},
		delay:   d.cfg.ReconnectDelay,
		onEvent: p.onEvent,
		onGap:   p.check,
	}
	if err := w.start(p.ctx, &p.wg); err != nil {
		p.cancel()
		return nil, explain("service", spec.Service, fmt.Errorf("following events: %w", err))
	}
	if _, err := d.scale(ctx, svc.ID, replicas, true); err != nil {
		p.cancel()
		p.wg.Wait()
		return nil, explain("service", spec.Service, err)
	}
	p.up.Store(true)
	return p, nil
}

// Running reports whether the service has replicas and a task running.
func (d *SwarmDriver) Running(ctx context.Context, spec *appfile.Spec) (bool, error) {
	svc, err := d.c.inspectService(ctx, spec.Service)
	if err != nil {
		return false, explain("service", spec.Service, err)
	}
	n, replicated, err := serviceMode(svc.Spec)
	if err != nil {
		return false, explain("service", spec.Service, err)
	}
	if !replicated || n == 0 {
		return false, nil
	}
	running, err := d.runningTasks(ctx, svc.ID)
	if err != nil {
		return false, explain("service", spec.Service, err)
	}
	return running > 0, nil
}

// runningTasks counts the service's tasks in state running.
func (d *SwarmDriver) runningTasks(ctx context.Context, id string) (int, error) {
	tasks, err := d.tasksRunning(ctx, id)
	return len(tasks), err
}

// tasksRunning lists the service's tasks in state running.
func (d *SwarmDriver) tasksRunning(ctx context.Context, id string) ([]taskJSON, error) {
	tasks, err := d.c.serviceTasks(ctx, id)
	if err != nil {
		return nil, err
	}
	var out []taskJSON
	for _, t := range tasks {
		if t.Status.State == "running" {
			out = append(out, t)
		}
	}
	return out, nil
}

// serviceProcess is one scaled-up service.
type serviceProcess struct {
	driver   *SwarmDriver
	app      string
	service  string
	id       string
	replicas uint64
	port     int // the upstream's port
	log      *slog.Logger

	ctx    context.Context // ends the event watch
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	stopping bool
	// up is set once Start's scale-up is applied. The event watch starts
	// before it, so as not to miss a scale-down right after; until then
	// the service's 0 replicas are its state before the wake, not a stop
	// from outside.
	up atomic.Bool

	// ExitState is Done, closed when the service is scaled to 0 or removed
	// by someone else or after Stop, and Err: wrapping
	// lifecycle.ErrStoppedOutside after an outside scale-down; nil after
	// Stop.
	lifecycle.ExitState

	stopOnce sync.Once
	stopErr  error
}

// Pid is 0: the tasks are not local processes of DynaPM.
func (p *serviceProcess) Pid() int { return 0 }

func (p *serviceProcess) finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping && err != nil {
		return
	}
	p.Finish(err)
}

// onEvent looks at the service after each of its events: an update may be
// someone scaling it to 0, a remove ends it.
func (p *serviceProcess) onEvent(e event) {
	switch e.Action {
	case "remove":
		p.finish(fmt.Errorf("service %q was removed: %w", p.service, lifecycle.ErrStoppedOutside))
	case "update":
		p.check(p.ctx)
	}
}

// check ends the process when the service has no replicas any more.
func (p *serviceProcess) check(ctx context.Context) {
	if !p.up.Load() {
		// Read before the inspection: a check that passes saw the
		// service after the scale-up.
		return
	}
	svc, err := p.driver.c.inspectService(ctx, p.id)
	if errors.Is(err, errNotFound) {
		p.finish(fmt.Errorf("service %q was removed: %w", p.service, lifecycle.ErrStoppedOutside))
		return
	}
	if err != nil {
		return
	}
	if n, replicated, err := serviceMode(svc.Spec); err == nil && (!replicated || n == 0) {
		p.finish(fmt.Errorf("service %q was scaled to 0: %w", p.service, lifecycle.ErrStoppedOutside))
	}
}

// Ready reports whether at least replicas tasks run and those on this node
// accept connections on their own address (see listensInside: a port
// published in host mode goes through docker-proxy too). Tasks on other
// nodes are trusted once running; the Manager's probe of the upstream
// follows.
func (p *serviceProcess) Ready(ctx context.Context) (bool, error) {
	tasks, err := p.driver.tasksRunning(ctx, p.id)
	if err != nil {
		return false, explain("service", p.service, err)
	}
	if uint64(len(tasks)) < p.replicas {
		return false, nil
	}
	for _, t := range tasks {
		info, err := p.driver.c.inspectContainer(ctx, t.Status.ContainerStatus.ContainerID)
		if err != nil {
			continue // another node's, or gone: the probe will tell
		}
		if ok, err := listensInside(ctx, info, p.port); !ok {
			if err != nil {
				err = fmt.Errorf("service %q: task container %.12s: %w", p.service, info.ID, err)
			}
			return false, err
		}
	}
	return true, nil
}

// Stop scales the service to 0 and waits until none of its tasks runs, up
// to timeout plus a grace for the engine (the tasks stop with the
// service's own stop_grace_period; sig is not used).
func (p *serviceProcess) Stop(_ syscall.Signal, timeout time.Duration) error {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
		p.stopErr = p.scaleDown(timeout)
		p.cancel()
		p.wg.Wait()
		p.finish(nil)
	})
	return p.stopErr
}

func (p *serviceProcess) scaleDown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+stopCallGrace)
	defer cancel()
	if _, err := p.driver.scale(ctx, p.id, 0, false); err != nil {
		if errors.Is(err, errNotFound) {
			return nil
		}
		return explain("service", p.service, err)
	}
	for {
		n, err := p.driver.runningTasks(ctx, p.id)
		if err == nil && n == 0 {
			return nil
		}
		t := time.NewTimer(p.driver.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("service %q still has %d tasks running after %v", p.service, n, timeout+stopCallGrace)
		case <-t.C:
		}
	}
}
