package dockerdriver

import (
	"context"
	"slices"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/lifecycle"
)

// adoptCheckTimeout bounds the look at an app's containers after one of
// them was started by someone else.
const adoptCheckTimeout = 10 * time.Second

// knownApp is what the driver remembers of an app it was asked about, so
// that a start of one of its containers by someone else can be matched to
// it.
type knownApp struct {
	// spec is the app's spec as last seen (a Start's is the Manager's
	// copy): its name and containers are what counts.
	spec *appfile.Spec
	ids  []string          // the containers' ids, as last resolved
	proc *containerProcess // the last one started, nil before any
}

// live reports whether DynaPM runs the app: a start of its containers is
// then DynaPM's own, or changes nothing.
func (k *knownApp) live() bool {
	if k.proc == nil {
		return false
	}
	select {
	case <-k.proc.Done():
		return false
	default:
		return true
	}
}

// matches reports whether the container with id and name is one of the
// app's.
func (k *knownApp) matches(id, name string) bool {
	return slices.Contains(k.spec.Containers, name) || slices.Contains(k.ids, id)
}

// WatchOutsideStarts makes the driver follow the engine's container
// starts, once an app of it is known, and hand a stopped app whose
// containers someone started to a.Adopt. It satisfies
// lifecycle.OutsideStartWatcher.
//
// An app is known from the Manager's first question about it (Running)
// or its first start; a reload that changes its containers while it is
// stopped is seen at its next start. A docker restart whose start the
// engine reports before the Manager has taken in the stop is left to the
// next connection, as before this watch.
func (d *ContainerDriver) WatchOutsideStarts(a lifecycle.Adopter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.adopter = a
}

// learn records spec, the ids its containers resolved to and, when not
// nil, the process just started for it.
func (d *ContainerDriver) learn(spec *appfile.Spec, ids []string, proc *containerProcess) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := d.apps[spec.Name]
	if k == nil {
		k = &knownApp{}
		d.apps[spec.Name] = k
	}
	k.spec, k.ids = spec, ids
	if proc != nil {
		k.proc = proc
	}
}

// forget drops proc, whose start failed, from its app.
func (d *ContainerDriver) forget(app string, proc *containerProcess) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if k := d.apps[app]; k != nil && k.proc == proc {
		k.proc = nil
	}
}

// ensureWatch subscribes, once, to the engine's container starts when an
// Adopter is set, and returns once that first subscription has been
// answered (or ctx ends): a caller that then looks at its containers
// misses no start. A subscription that fails is retried in the
// background; each resubscription looks at every known stopped app.
func (d *ContainerDriver) ensureWatch(ctx context.Context) {
	d.mu.Lock()
	if d.adopter == nil || d.closed {
		d.mu.Unlock()
		return
	}
	ready := d.watchReady
	if ready == nil {
		ready = make(chan struct{})
		d.watchReady = ready
		var watchCtx context.Context
		watchCtx, d.watchCancel = context.WithCancel(context.Background())
		// Counted before the lock is released, so that Close waits.
		d.watchWG.Add(1)
		go func() {
			defer d.watchWG.Done()
			w := &watch{
				c:       d.c,
				log:     d.cfg.Logger,
				filter:  map[string][]string{"type": {"container"}, "event": {"start"}},
				delay:   d.cfg.ReconnectDelay,
				onEvent: func(e event) { d.onOutsideStart(watchCtx, e) },
				onGap:   func(ctx context.Context) { d.adoptRunning(ctx, "", "") },
				persist: true,
			}
			if err := w.start(watchCtx, &d.watchWG); err != nil && watchCtx.Err() == nil {
				d.cfg.Logger.Warn("cannot follow the Docker Engine's container starts yet: a container started outside DynaPM is noticed at its next connection until then", "err", err)
			}
			close(ready)
		}()
	}
	d.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
	}
}

// onOutsideStart looks at the stopped apps the started container belongs
// to.
func (d *ContainerDriver) onOutsideStart(ctx context.Context, e event) {
	d.adoptRunning(ctx, e.Actor.ID, e.Actor.Attributes["name"])
}

// adoptRunning hands to the Adopter each known app that DynaPM does not
// run, has the container id or name (any app when both are empty), and
// whose containers all run now.
func (d *ContainerDriver) adoptRunning(ctx context.Context, id, name string) {
	d.mu.Lock()
	adopter := d.adopter
	var specs []*appfile.Spec
	for _, k := range d.apps {
		if !k.live() && (id == "" && name == "" || k.matches(id, name)) {
			specs = append(specs, k.spec)
		}
	}
	d.mu.Unlock()
	for _, spec := range specs {
		cctx, cancel := context.WithTimeout(ctx, adoptCheckTimeout)
		running, ids, err := d.running(cctx, spec)
		cancel()
		log := d.cfg.Logger.With("app", spec.Name)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Warn("a container of the app was started outside DynaPM, but its containers cannot be looked at", "err", err)
			}
		case running:
			d.learn(spec, ids, nil)
			// Adopted only if the app still runs these containers: a
			// reload may have changed its driver or its containers.
			same := func(s *appfile.Spec) bool {
				return s.Driver == appfile.DriverDocker && slices.Equal(s.Containers, spec.Containers)
			}
			if adopter.Adopt(spec.Name, same) {
				log.Info("the app's containers were started outside DynaPM: adopting them")
			}
		}
	}
}
