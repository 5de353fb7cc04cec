package lifecycle

import (
	"slices"

	"github.com/dynapm/dynapm/appfile"
)

// An app runs one instance, or several when its file asks for scale. Each
// instance is starting (not ready, not asked to stop), ready (ready, not
// asked to stop) or stopping (asked to stop). The app's own state follows
// its instances, under the Manager's lock:
//
//   - starting: no ready instance, one starting (never more than one
//     instance of an app starts at a time);
//   - ready: at least one ready instance; Wake leases the ready instance
//     with the fewest open leases;
//   - stopping: every instance was asked to stop (stop, restart, reload,
//     shutdown, the idle stop of the last instance); the app is stopped
//     once all are gone;
//   - stopped, failed: no starting or ready instance; instances stopped on
//     their own (idle, scale down) may still be going away.
//
// An instance that stops or crashes alone leaves the app as it was as long
// as another one is starting or ready.

// ready reports whether in serves new leases: it passed its probe,
// nobody asked it to stop, and it is not frozen (nor maybe frozen).
func (in *instance) ready() bool {
	return !in.readyAt.IsZero() && !in.stopReq && !in.frozen && !in.freezeApplied
}

// starting reports whether in is being spawned or probed.
func (in *instance) starting() bool { return in.readyAt.IsZero() && !in.stopReq }

// instState is in's state for status.
func (in *instance) instState() State {
	switch {
	case in.stopReq:
		return Stopping
	case in.readyAt.IsZero():
		return Starting
	case in.frozen || in.freezeApplied:
		return Frozen
	}
	return Ready
}

// addInstance inserts in, keeping a.insts sorted by index.
func (a *app) addInstance(in *instance) {
	i, _ := slices.BinarySearchFunc(a.insts, in.index, func(x *instance, idx int) int { return x.index - idx })
	a.insts = slices.Insert(a.insts, i, in)
}

// dropInstance forgets in (idempotent).
func (a *app) dropInstance(in *instance) {
	if i := slices.Index(a.insts, in); i >= 0 {
		a.insts = slices.Delete(a.insts, i, i+1)
	}
}

// freeIndex returns the lowest index no live instance holds.
func (a *app) freeIndex() int {
	for i, in := range a.insts { // sorted: the first gap is the answer
		if in.index != i {
			return i
		}
	}
	return len(a.insts)
}

// pick returns the ready instance with the fewest open leases (the lowest
// index on a tie), or nil when none serves. An instance whose process
// exited is skipped even before its goroutine has recorded the exit: a
// dead upstream is never handed out.
func (a *app) pick() *instance {
	if len(a.insts) == 1 { // the common case, on every connection
		in := a.insts[0]
		if !in.ready() {
			return nil
		}
		select {
		case <-in.proc.Done():
			return nil
		default:
			return in
		}
	}
	var best *instance
	for _, in := range a.insts {
		if !in.ready() || (best != nil && in.conns >= best.conns) {
			continue
		}
		select {
		case <-in.proc.Done():
			continue
		default:
		}
		best = in
	}
	return best
}

// startingInstance returns the instance being started, or nil.
func (a *app) startingInstance() *instance {
	for _, in := range a.insts {
		if in.starting() {
			return in
		}
	}
	return nil
}

// active counts the instances starting or ready.
func (a *app) active() int {
	n := 0
	for _, in := range a.insts {
		if !in.stopReq {
			n++
		}
	}
	return n
}

// minInstances is how many instances idle stops leave running: scale.min,
// and for persistent and always apps at least one.
func minInstances(spec *appfile.Spec) int {
	if startsAtBoot(spec) {
		return max(spec.Scale.Min, 1)
	}
	return spec.Scale.Min
}

// targetConnections is the open leases per instance before another starts.
func targetConnections(spec *appfile.Spec) int {
	if spec.Scale.TargetConnections <= 0 {
		return appfile.DefaultTargetConnections
	}
	return spec.Scale.TargetConnections
}

// instAttrs are the log attributes naming in, for a scaled app only: the
// log of an app with one instance stays as it was.
func instAttrs(a *app, in *instance, attrs []any) []any {
	if a.spec.Scale.Instances() > 1 {
		attrs = append(attrs, "instance", in.index)
	}
	return attrs
}
