package main

import (
	"math"
	"slices"
	"time"
)

// The warm-path targets, in report order.
const (
	direct  = "direct"
	dynapm  = "dynapm"
	haproxy = "haproxy"
)

var targets = []string{direct, dynapm, haproxy}

// warmRow is one warm-path measurement: the median per target, and the
// values of each repetition for the ratios.
type warmRow struct {
	scenario, metric, unit string
	lowerBetter            bool
	values                 map[string]float64 // missing: not measured
	// reps holds each repetition's value per target, in the order they
	// ran; nil or of unequal lengths: ratios of the medians.
	reps  map[string][]float64
	goal  string
	chart string // non-empty: a bar group of this name in the chart
	key   string // non-empty: the goals table refers to the row by it
	// cols are the three targets of the row's table, the baseline first;
	// nil: direct, dynapm and haproxy, the warm path's. section names
	// the table of the rows with other targets.
	cols    []string
	section string
	// noRatios: the values are counts near zero (losses), whose ratios
	// say nothing.
	noRatios bool
}

// targets3 is the row's three targets, the baseline first.
func (r warmRow) targets3() []string {
	if r.cols == nil {
		return targets
	}
	return r.cols
}

// ratios are the per-repetition ratios of a's values to b's, each of two
// targets measured back to back; nil without repetitions.
func (r warmRow) ratios(a, b string) []float64 {
	ra, rb := r.reps[a], r.reps[b]
	if len(ra) == 0 || len(ra) != len(rb) {
		return nil
	}
	q := make([]float64, 0, len(ra))
	for i := range ra {
		if rb[i] != 0 {
			q = append(q, ra[i]/rb[i])
		}
	}
	return q
}

// ratio is a's value over b's: the median of the ratios of the
// repetitions, so that a slow spell of the machine (here once every target
// at half speed for one repetition) cancels out instead of deciding which
// repetition each target's median comes from. Without repetitions, the
// ratio of the values.
func (r warmRow) ratio(a, b string) float64 {
	if q := r.ratios(a, b); len(q) > 0 {
		return median(q)
	}
	x, okx := r.values[a]
	y, oky := r.values[b]
	if !okx || !oky || y == 0 {
		return math.NaN()
	}
	return x / y
}

// ratioRange is the lowest and highest per-repetition ratio of a to b;
// NaN without repetitions.
func (r warmRow) ratioRange(a, b string) (lo, hi float64) {
	q := r.ratios(a, b)
	if len(q) == 0 {
		return math.NaN(), math.NaN()
	}
	return slices.Min(q), slices.Max(q)
}

// addRep records target t's samples ss: their median as its value, and
// each one under reps.
func (r *warmRow) addRep(t string, ss []sample, f func(sample) float64) {
	r.add(t, perRep(ss, f))
}

// add records target t's values, one per repetition in the order they ran.
func (r *warmRow) add(t string, vs []float64) {
	if r.values == nil {
		r.values = map[string]float64{}
	}
	if r.reps == nil {
		r.reps = map[string][]float64{}
	}
	r.values[t] = median(vs)
	r.reps[t] = append(r.reps[t][:0], vs...)
}

func perRep(ss []sample, f func(sample) float64) []float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	return v
}

// speedRatio is ratio to direct where higher is better, so that the chart
// reads the same for rates and latencies.
func (r warmRow) speedRatio(t string) float64 {
	if r.lowerBetter {
		return r.ratio(direct, t)
	}
	return r.ratio(t, direct)
}

// factRow is one line of the cold-path, herd and scale sections.
type factRow struct {
	scenario, measurement, value, goal string
}

// report is everything one run measured.
type report struct {
	started  time.Time
	machine  machine
	commands []string
	warm     []warmRow
	facts    []factRow
	syscalls []syscallRow
	herd     herdResult
	// placements: the bulk download with its processes pinned, of
	// placementSize bytes each.
	placements    []placementRow
	placementSize int64
	notes         []string
	haproxy       string // the generated haproxy.cfg
	nginx         string // the generated nginx.conf
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, sprintf(format, args...))
}

// sample is one warm-path measurement of one target.
type sample struct {
	value, p50, p99 float64
	avg             float64 // average latency, where the client reports no percentiles
	cpu, csw        float64 // the proxy's CPU seconds and context switches
	machine, mcsw   float64 // the whole machine's busy seconds and context switches
	softirq         float64 // the part of machine in softirq
	ops, errors     float64
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func medianDur(xs []time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianDiff(a, b []time.Duration) time.Duration {
	return diffQuartile(a, b, 2)
}

// diffQuartile is the q-th quartile (1, 2 or 3) of the paired
// differences a[i] - b[i]: with q 1 and 3, their spread.
func diffQuartile(a, b []time.Duration, q int) time.Duration {
	if len(a) == 0 {
		return 0
	}
	d := make([]time.Duration, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	slices.Sort(d)
	return d[(len(d)-1)*q/4]
}

func medianInt(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// scenarioRows turns one scenario's samples (per target, one per
// repetition, in the order the repetitions ran) into warm rows.
type scenarioRows struct {
	rep      *report
	scenario string
	samples  map[string][]sample
	// cols and section, when set, put the rows in a table of their own
	// with these targets (see warmRow).
	cols    []string
	section string
}

// tag gives w the scenario's name and table.
func (s scenarioRows) tag(w warmRow) warmRow {
	w.scenario, w.cols, w.section = s.scenario, s.cols, s.section
	return w
}

// add appends w with f of every target's samples; the baseline's
// (direct's) only when withDirect (it has no proxy CPU, say).
func (s scenarioRows) add(w warmRow, f func(sample) float64, withDirect bool) {
	w = s.tag(w)
	for i, t := range w.targets3() {
		ss, ok := s.samples[t]
		if !ok || (i == 0 && !withDirect) {
			continue
		}
		w.addRep(t, ss, f)
	}
	s.rep.warm = append(s.rep.warm, w)
}

// overDirect appends w with, per proxy and repetition, f of its sample
// minus f of direct's in the same repetition.
func (s scenarioRows) overDirect(w warmRow, f func(sample) float64) {
	w = s.tag(w)
	d := s.samples[w.targets3()[0]]
	for _, t := range w.targets3()[1:] {
		ss, ok := s.samples[t]
		if !ok || len(ss) != len(d) {
			continue
		}
		vs := make([]float64, len(ss))
		for i := range ss {
			vs[i] = f(ss[i]) - f(d[i])
		}
		w.add(t, vs)
	}
	s.rep.warm = append(s.rep.warm, w)
}

// cpu appends the proxy's CPU time per operation, the whole machine's
// (direct included), and the machine's over direct's, each times scale
// (1e6 for µs); goal and key go to the last.
func (s scenarioRows) cpu(per, unit string, scale float64, goal, key string) {
	proxy := func(x sample) float64 { return x.cpu / x.ops * scale }
	mach := func(x sample) float64 { return x.machine / x.ops * scale }
	s.add(warmRow{metric: "proxy CPU per " + per, unit: unit, lowerBetter: true}, proxy, false)
	s.add(warmRow{metric: "machine CPU per " + per, unit: unit, lowerBetter: true}, mach, true)
	s.overDirect(warmRow{metric: "machine CPU per " + per + " over direct's", unit: unit, lowerBetter: true, goal: goal, key: key}, mach)
}

// The keys of the warm rows the goals table reads.
const (
	keyKeepAlive    = "keep-alive rate"
	keyKeepAliveCPU = "keep-alive machine CPU over direct"
	keyNewConn      = "new connection rate"
	keyNewConnCPU   = "new connection machine CPU over direct"
	keyAddedLatency = "added latency p50"
	keyBulk         = "bulk rate"
	keyRedisGet     = "redis GET rate"
	keyRedisSet     = "redis SET rate"
	keyRedisCPU     = "redis machine CPU over direct"
	keyPgbench      = "pgbench rate"
	keyPgbenchCPU   = "pgbench machine CPU over direct"
	keyUDPRate      = "udp rate"
	keyUDPCPU       = "udp proxy CPU"
	keyHandoffKA    = "handoff keep-alive rate"
	keyHandoffNC    = "handoff new connection rate"
)
