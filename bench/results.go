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

// warmRow is one warm-path measurement: the median per target.
type warmRow struct {
	scenario, metric, unit string
	lowerBetter            bool
	values                 map[string]float64 // missing: not measured
	goal                   string
	chart                  string // non-empty: a bar group of this name in the chart
}

func (r warmRow) ratio(a, b string) float64 {
	x, okx := r.values[a]
	y, oky := r.values[b]
	if !okx || !oky || y == 0 {
		return math.NaN()
	}
	return x / y
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
