package main

import (
	"fmt"
	"math"
	"strings"
)

// goalRow is one line of the goals table: a goal of the issue that set
// them, what this run measured and whether that meets it.
type goalRow struct {
	measure, goal, measured, verdict string
}

const notMeasured = "not measured"

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// find returns the warm row with key.
func (r *report) find(key string) (warmRow, bool) {
	for _, w := range r.warm {
		if w.key == key {
			return w, true
		}
	}
	return warmRow{}, false
}

// spread is a ratio as "median (lowest–highest)" of the repetitions.
func spread(w warmRow, a, b string) string {
	lo, hi := w.ratioRange(a, b)
	if math.IsNaN(lo) || lo == hi {
		return fmtRatio(w.ratio(a, b))
	}
	return fmt.Sprintf("%s (%.2f–%.2f)", fmtRatio(w.ratio(a, b)), lo, hi)
}

// goals measures this run against the goals of issue 26: all ratios of
// the same run, medians of the per-repetition ratios unless a goal says
// every repetition.
func (r *report) goals() []goalRow {
	var gs []goalRow
	// atLeastOf: the median of a's ratio to b (named as of) over keys.
	atLeastOf := func(a, b, of, measure, goal string, min float64, keys ...string) {
		g := goalRow{measure: measure, goal: goal, verdict: notMeasured}
		var parts []string
		ok := true
		for _, k := range keys {
			w, found := r.find(k)
			q := w.ratio(a, b)
			if !found || math.IsNaN(q) {
				gs = append(gs, g)
				return
			}
			part := spread(w, a, b)
			if len(keys) > 1 {
				part = strings.Fields(w.metric)[0] + " " + part
			}
			parts = append(parts, part)
			ok = ok && q >= min
		}
		g.measured, g.verdict = strings.Join(parts, ", ")+" of "+of, verdict(ok)
		gs = append(gs, g)
	}
	atLeast := func(measure, goal string, min float64, keys ...string) {
		atLeastOf(dynapm, haproxy, "HAProxy", measure, goal, min, keys...)
	}
	atLeast("keep-alive requests/s", "median at least 1.1 × HAProxy", 1.1, keyKeepAlive)
	atLeast("new connections/s", "median at least 1.2 × HAProxy", 1.2, keyNewConn)
	atLeast("redis-benchmark GET/SET, 20 clients", "median at least 1.1 × HAProxy", 1.1, keyRedisGet, keyRedisSet)
	atLeast("pgbench -S, 8 clients", "at least HAProxy", 1, keyPgbench)

	// atMostOf: a's median value at most b's (named as of).
	atMostOf := func(a, b, of, measure, goal, key string) {
		g := goalRow{measure: measure, goal: goal, verdict: notMeasured}
		w, found := r.find(key)
		d, okd := w.values[a]
		h, okh := w.values[b]
		if found && okd && okh {
			g.measured = fmt.Sprintf("%s %s, %s %s %s (ratio %s)", a, fmtVal(d, true), of, fmtVal(h, true), w.unit, spread(w, a, b))
			g.verdict = verdict(d <= h)
		}
		gs = append(gs, g)
	}
	atMost := func(measure, goal, key string) { atMostOf(dynapm, haproxy, "HAProxy", measure, goal, key) }
	atMost("added latency p50, one connection", "at most HAProxy's", keyAddedLatency)
	for _, c := range []struct{ scenario, key string }{
		{"keep-alive", keyKeepAliveCPU}, {"new connections", keyNewConnCPU},
		{"redis-benchmark, 20 clients", keyRedisCPU}, {"pgbench -S", keyPgbenchCPU},
	} {
		atMost("machine-wide CPU per request over direct's: "+c.scenario, "at most HAProxy's", c.key)
	}

	bulk := goalRow{measure: "bulk", goal: "at least 0.75 × direct in every repetition", verdict: notMeasured}
	if w, ok := r.find(keyBulk); ok {
		if q := w.ratios(dynapm, direct); len(q) > 0 {
			lo, _ := w.ratioRange(dynapm, direct)
			bulk.measured = fmt.Sprintf("%s of direct; lowest %.2f", spread(w, dynapm, direct), lo)
			bulk.verdict = verdict(lo >= 0.75)
		}
	}
	gs = append(gs, bulk)

	// Issue 24: UDP against nginx's stream module; issue 25: the socket
	// hand-off against the program alone.
	atLeastOf(dynapm, nginxT, "nginx", "UDP datagrams/s, "+udpThroughput.String()+" (issue 24)", "median at least nginx's", 1, keyUDPRate)
	atMostOf(dynapm, nginxT, "nginx", "UDP proxy CPU per datagram (issue 24)", "at most nginx's", keyUDPCPU)
	atLeastOf(socketT, direct, "direct", "handoff: socket, keep-alive requests/s (issue 25)", "median at least 0.97 × direct", 0.97, keyHandoffKA)
	atLeastOf(socketT, direct, "direct", "handoff: socket, new connections/s (issue 25)", "median at least 0.97 × direct", 0.97, keyHandoffNC)

	herd := goalRow{measure: "herd, last served", goal: fmt.Sprintf("at most %.1f × the direct floor", herdGoal), verdict: notMeasured}
	if q := r.herd.ratio(); !math.IsNaN(q) {
		herd.measured = fmt.Sprintf("%.2f × (%s after the program listened; floor %s)", q, ms(r.herd.last), ms(r.herd.floor))
		herd.verdict = verdict(q <= herdGoal)
	}
	return append(gs, herd)
}

func (g goalRow) cells() []string { return []string{g.measure, g.goal, g.measured, g.verdict} }

var goalHeader = []string{"measure", "goal", "measured", "verdict"}
