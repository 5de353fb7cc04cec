package memory

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"slices"
	"sync"
)

// Check reads memory once and stops or restarts apps as the Policy decides:
// first apps over their memory_max, then, counting those as freed, victims
// of a shortage. A shortage lasts from one check to the next until memory
// is back past the margin, so stops that freed less than expected are
// followed by more at the next check. It returns the shortage stops it
// made (memory_max actions are only logged), for tests and benchmarks.
func (m *Monitor) Check(ctx context.Context) []Stop {
	var reported map[string]reported
	if ra := m.reporting.Load(); ra != nil {
		reported = m.report(ctx, *ra)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, policy := m.readLocked(ctx, false, reported)
	attrs := readingAttrs(r, policy)
	m.running = slices.ContainsFunc(r.Apps, AppReading.running)

	var acts []action
	for _, l := range policy.OverMax(r) {
		acts = append(acts, limitAction(l))
		markStopping(&r, l.App)
	}
	during := m.shortage
	stops := policy.Victims(r, during)
	for _, s := range stops {
		acts = append(acts, stopAction(s))
	}
	need, cause, now := policy.shortage(r, 0, during)
	m.shortage = now
	if during != (Shortage{}) && now == (Shortage{}) {
		m.log.Info("memory shortage over: back past the margin", attrs...)
	}
	var freed int64
	for _, s := range stops {
		freed += s.RSS
	}
	switch short := need > freed; {
	case short && !m.short:
		m.log.Warn("memory short and not enough apps left to stop",
			append(attrs, "cause", string(cause), "missing_bytes", need-freed)...)
		m.short = true
	case !short:
		m.short = false
	}
	m.apply(ctx, attrs, acts)
	return stops
}

// MakeRoom stops idle apps before app starts, when its expected size (the
// peak RSS of its last run) would push memory below the floor or over
// budget. The lifecycle manager calls it before spawning, without holding
// its own lock. Apps with open connections are never stopped for it. It
// also tells Run that a program is starting: checks that slowed to
// IdleInterval while nothing ran come at the usual pace again.
//
// It is on the cold-start path, so it costs next to nothing when there is
// no floor or budget or the app's size is unknown, and otherwise reuses
// the tree RSS measured by the last check (measuring only processes started
// since).
func (m *Monitor) MakeRoom(ctx context.Context, app string) {
	select {
	case m.starting <- struct{}{}:
	default: // Run has yet to take the last one
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.cfg.Policy
	if p.MinAvailableBytes <= 0 && p.MinAvailablePercent <= 0 && p.Budget <= 0 {
		return
	}
	expected := m.peakLocked(app)
	if expected <= 0 {
		return
	}
	r, policy := m.readLocked(ctx, true, nil)
	var acts []action
	for _, s := range policy.MakeRoom(r, app, expected) {
		acts = append(acts, stopAction(s))
	}
	if len(acts) > 0 {
		m.log.Info("making room before start", "app", app, "expected_bytes", expected)
	}
	m.apply(ctx, readingAttrs(r, policy), acts)
}

// readLocked takes a Reading: MemAvailable, the apps and their tree RSS (or
// reported figures). With cached set, an app whose process is the one the
// last read measured keeps that RSS instead of being measured again, and
// no Reporter is asked. reported holds the figures Check read before it
// took m.mu. When MemAvailable cannot be read, the returned policy has no
// floor, so the budget still works.
func (m *Monitor) readLocked(ctx context.Context, cached bool, reported map[string]reported) (Reading, Policy) {
	policy := m.cfg.Policy
	var r Reading
	var err error
	r.Available, r.Total, err = m.cfg.Reader.Available()
	if err != nil && !m.readFailing {
		m.log.Warn("reading available memory; min_available is not enforced until it works again", "err", err)
	}
	m.readFailing = err != nil
	if err != nil {
		policy.MinAvailableBytes, policy.MinAvailablePercent = 0, 0
		r.Available, r.Total = math.MaxInt64/2, 0
	}
	apps := m.cfg.Apps.MemoryUsage()
	r.Apps = make([]AppReading, len(apps))
	var w treeWalker
	var last map[string]measuredRSS
	if ms := m.measured.Load(); ms != nil {
		last = *ms
	}
	measured := make(map[string]measuredRSS)
	var reporting []reportingApp
	for i, a := range apps {
		r.Apps[i].AppUsage = a
		if a.Pid <= 0 && len(a.Reporters) == 0 {
			continue
		}
		mr := measuredRSS{pid: a.Pid, reporters: len(a.Reporters)}
		switch c, ok := last[a.Name]; {
		case len(a.Reporters) > 0:
			ra := reportingApp{name: a.Name, pid: a.Pid, reps: a.Reporters}
			reporting = append(reporting, ra)
			f, fresh := reported[a.Name]
			mr.rss = m.reportedRSSLocked(ctx, ra, cached, f, fresh, c, ok)
		case len(a.Pids) > 1:
			// Several instances: their sum, measured afresh (the cache
			// knows one pid per app).
			for _, pid := range a.Pids {
				rss, _ := w.treeRSS(pid)
				mr.rss += rss
			}
			mr.pid = -1 // a sum over instances: never reused as one pid's
		case cached && ok && c.pid == a.Pid && c.reporters == 0:
			mr.rss = c.rss
		default:
			// An error means the process just exited: nothing to free.
			mr.rss, _ = w.treeRSS(a.Pid)
		}
		r.Apps[i].RSS = mr.rss
		measured[a.Name] = mr
	}
	m.measured.Store(&measured)
	m.reporting.Store(&reporting)
	m.trackPeaksLocked(r)
	return r, policy
}

// reportingApp is an app whose instances report their memory.
type reportingApp struct {
	name string
	pid  int
	reps []Reporter
}

// reported is the sum of an app's reported figures, and the run it was
// read for.
type reported struct {
	pid, reporters int
	bytes          int64
	err            error
}

// report asks every Reporter of apps for its figure, all at once and
// bounded by ReportTimeout, and returns each app's sum.
func (m *Monitor) report(ctx context.Context, apps []reportingApp) map[string]reported {
	if len(apps) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ReportTimeout)
	defer cancel()
	figures := make([][]uint64, len(apps))
	errs := make([][]error, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		figures[i], errs[i] = make([]uint64, len(a.reps)), make([]error, len(a.reps))
		for j, rep := range a.reps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				figures[i][j], errs[i][j] = rep.MemoryBytes(ctx)
			}()
		}
	}
	wg.Wait()
	out := make(map[string]reported, len(apps))
	for i, a := range apps {
		f := reported{pid: a.pid, reporters: len(a.reps)}
		for j := range a.reps {
			f.bytes += int64(min(figures[i][j], math.MaxInt64/2))
			f.err = cmp.Or(f.err, errs[i][j])
		}
		out[a.name] = f
	}
	return out
}

// reportedRSSLocked returns the memory of an app whose instances report it:
// the figures Check read for this run (f, when fresh), else, outside
// MakeRoom, figures asked for now (the run began since the last check).
// MakeRoom asks no Reporter: it keeps the last read's figure for the same
// run, or takes the app's last peak for a run not yet measured. When a
// Reporter fails, the last figure for the same run stands (0 for a new run),
// with a warning once per failing streak. last is what the last read
// measured (ok when it measured the app).
func (m *Monitor) reportedRSSLocked(ctx context.Context, a reportingApp, cached bool, f reported, fresh bool, last measuredRSS, ok bool) int64 {
	sameRun := ok && last.pid == a.pid && last.reporters == len(a.reps)
	switch {
	case fresh && f.pid == a.pid && f.reporters == len(a.reps):
	case cached && sameRun:
		return last.rss
	case cached:
		return m.peakLocked(a.name)
	default:
		f = m.report(ctx, []reportingApp{a})[a.name]
	}
	if f.err != nil {
		if !m.reportFailing[a.name] {
			m.log.Warn("reading the memory an app reports; counting its last figure until it works again",
				"app", a.name, "err", f.err)
		}
		m.reportFailing[a.name] = true
		if sameRun {
			return last.rss
		}
		return 0
	}
	delete(m.reportFailing, a.name)
	return f.bytes
}

// trackPeaksLocked records each running app's peak RSS and ends the runs of
// apps no longer running. Apps that no longer exist are forgotten.
func (m *Monitor) trackPeaksLocked(r Reading) {
	seen := make(map[string]bool, len(m.peaks))
	for _, a := range r.Apps {
		run := a.runID()
		p := m.peaks[a.Name]
		if p == nil {
			if run == 0 {
				continue // never seen running: nothing to remember
			}
			p = &peak{}
			m.peaks[a.Name] = p
		}
		seen[a.Name] = true
		if p.pid != 0 && p.pid != run { // the run we watched ended
			p.lastRun, p.pid, p.run = p.run, 0, 0
		}
		if run != 0 {
			p.pid = run
			p.run = max(p.run, a.RSS)
		}
	}
	for name := range m.peaks {
		if !seen[name] {
			delete(m.peaks, name)
		}
	}
	for name := range m.reportFailing {
		if !seen[name] {
			delete(m.reportFailing, name)
		}
	}
}

// markStopping marks app in r as stopping, so that its memory counts as
// freed for the decisions that follow.
func markStopping(r *Reading, app string) {
	for i := range r.Apps {
		if r.Apps[i].Name == app {
			r.Apps[i].Stopping = true
		}
	}
}

// action is one stop or restart to carry out.
type action struct {
	app         string
	restart     bool
	rss         int64
	connections int
	reason      string // for the lifecycle log: "memory: over budget"
	attrs       []any  // for our log
}

func stopAction(s Stop) action {
	return action{
		app: s.App, rss: s.RSS, connections: s.Connections,
		reason: "memory: " + string(s.Cause),
		attrs:  []any{"cause", string(s.Cause), "last_resort", s.LastResort},
	}
}

func limitAction(l Limit) action {
	return action{
		app: l.App, restart: l.Action == Restart, rss: l.RSS, connections: l.Connections,
		reason: "memory: over memory_max",
		attrs:  []any{"cause", "over memory_max", "memory_max_bytes", l.Max, "action", l.Action.String()},
	}
}

// apply carries out acts concurrently (each stop may wait for stop_timeout)
// and logs each with the reading that caused it and the memory it freed.
// reading holds the attributes of the reading that caused them.
func (m *Monitor) apply(ctx context.Context, reading []any, acts []action) {
	var wg sync.WaitGroup
	for _, a := range acts {
		wg.Add(1)
		go m.applyOne(ctx, &wg, reading, a)
	}
	wg.Wait()
}

// applyOne carries out one stop or restart.
func (m *Monitor) applyOne(ctx context.Context, wg *sync.WaitGroup, reading []any, a action) {
	defer wg.Done()
	var err error
	verb := "stopped app for memory"
	if a.restart {
		verb = "restarted app for memory"
		err = m.cfg.Apps.RestartForMemory(ctx, a.app, a.reason)
	} else {
		err = m.cfg.Apps.StopForMemory(ctx, a.app, a.reason)
	}
	attrs := append([]any{"app", a.app, "freed_bytes", a.rss}, a.attrs...)
	attrs = append(attrs, reading...)
	switch {
	case err != nil:
		m.log.Error("acting on app for memory", append(attrs, "err", err, "restart", a.restart)...)
	case a.connections > 0:
		m.log.Warn(verb+", cutting open connections", append(attrs, "connections_cut", a.connections)...)
	default:
		m.log.Info(verb, attrs...)
	}
}

// readingAttrs describes a reading for the log.
func readingAttrs(r Reading, policy Policy) []any {
	var sum int64
	for _, a := range r.Apps {
		sum += a.RSS
	}
	return []any{slog.Group("reading",
		"available_bytes", r.Available, "total_bytes", r.Total,
		"floor_bytes", policy.Floor(r.Total), "apps_rss_bytes", sum, "budget_bytes", policy.Budget)}
}
