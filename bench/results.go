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
}

// ratio is a's value over b's: the median of the ratios of the
// repetitions, each of which measured both targets back to back, so that
// a slow spell of the machine (here once every target at half speed for
// one repetition) cancels out instead of deciding which repetition each
// target's median comes from. Without repetitions, the ratio of the values.
func (r warmRow) ratio(a, b string) float64 {
	if ra, rb := r.reps[a], r.reps[b]; len(ra) > 0 && len(ra) == len(rb) {
		q := make([]float64, 0, len(ra))
		for i := range ra {
			if rb[i] != 0 {
				q = append(q, ra[i]/rb[i])
			}
		}
		if len(q) > 0 {
			return median(q)
		}
	}
	x, okx := r.values[a]
	y, oky := r.values[b]
	if !okx || !oky || y == 0 {
		return math.NaN()
	}
	return x / y
}

// addRep records target t's samples ss: their median as its value, and
// each one under reps.
func (r *warmRow) addRep(t string, ss []sample, f func(sample) float64) {
	r.values[t] = medianOf(ss, f)
	if r.reps == nil {
		r.reps = map[string][]float64{}
	}
	for _, s := range ss {
		r.reps[t] = append(r.reps[t], f(s))
	}
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
	notes    []string
	haproxy  string // the generated haproxy.cfg
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, sprintf(format, args...))
}

// sample is one warm-path measurement of one target.
type sample struct {
	value, p50, p99, cpu, csw, ops, errors float64
}

func medianOf(xs []sample, f func(sample) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	return median(v)
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
	d := make([]time.Duration, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return medianDur(d)
}
