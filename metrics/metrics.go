// Package metrics exposes DynaPM's Prometheus metrics, all named dynapm_*.
// Event counters (starts, stops, cold starts, bytes) are fed by the
// lifecycle manager and the proxy through Metrics' methods; gauges (held and
// open connections, RSS, app count) are read from a status snapshot at
// scrape time, so that the data path pays nothing for them.
package metrics

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dynapm/dynapm/admin"
)

// Metrics holds DynaPM's metrics in a registry of its own (no global
// state). All methods are safe for concurrent use.
type Metrics struct {
	reg          *prometheus.Registry
	starts       *prometheus.CounterVec
	stops        *prometheus.CounterVec
	coldStart    *prometheus.HistogramVec
	connections  *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	turnedAway   *prometheus.CounterVec
	refused      *prometheus.CounterVec
	reloadErrors prometheus.Counter
	udp          udpMetrics // udp.go

	// forgotten holds the apps whose series Forget dropped: a removed app's
	// last events (its stop, its last connections ending) come after that
	// and must not bring the series back.
	mu        sync.RWMutex
	forgotten map[string]struct{}
}

// New registers DynaPM's metrics, the Go runtime's and the daemon process's.
// apps, called at every scrape, reports the apps' current status.
func New(apps func() []admin.App) *Metrics {
	m := &Metrics{
		forgotten: make(map[string]struct{}),
		reg:       prometheus.NewRegistry(),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynapm_app_starts_total",
			Help: "Program starts, by reason: " + strings.Join(startReasons, ", ") + ".",
		}, []string{"app", "reason"}),
		stops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynapm_app_stops_total",
			Help: "Program stops and exits, by reason: " + strings.Join(stopReasons, ", ") + ".",
		}, []string{"app", "reason"}),
		coldStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dynapm_app_cold_start_seconds",
			Help:    "Time from spawning a program to its being ready.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5ms … 41s
		}, []string{"app"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynapm_app_connections_total",
			Help: "Client connections spliced to the app, counted when they end.",
		}, []string{"app"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynapm_app_bytes_total",
			Help: "Bytes spliced, counted when a connection ends; direction in is client to app.",
		}, []string{"app", "direction"}),
		turnedAway: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynapm_app_turned_away_total",
			Help: "Connections closed unserved because their source is outside wake_from and the app was not running.",
		}, []string{"app"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynapm_app_refused_connections_total",
			Help: "Client connections closed without being served, by reason: max_pending, backoff, start_failed, start_timeout, upstream_unreachable, shutdown, removed, disabled, other.",
		}, []string{"app", "reason"}),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynapm_reload_errors_total",
			Help: "App file versions that could not be put in force (each distinct problem once).",
		}),
	}
	m.udp = newUDPMetrics()
	m.reg.MustRegister(m.starts, m.stops, m.coldStart, m.connections, m.bytes, m.turnedAway, m.refused, m.reloadErrors,
		m.udp.flows, m.udp.dropped,
		&snapshot{apps: apps},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "dynapm"}),
	)
	return m
}

// Registry is where the metrics are registered, for serving or testing.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// AppStarted counts a program start; reason is what caused it, in the
// lifecycle manager's words, counted under one of a fixed set of labels
// (startReasons).
func (m *Metrics) AppStarted(app, reason string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.forgottenLocked(app) {
		return
	}
	m.starts.WithLabelValues(app, startLabel(reason)).Inc()
}

// AppReady records how long the program took from spawn to ready.
func (m *Metrics) AppReady(app string, coldStart time.Duration) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.forgottenLocked(app) {
		return
	}
	m.coldStart.WithLabelValues(app).Observe(coldStart.Seconds())
}

// AppStopped counts a program stop (or exit: reason "crash"); reason, in
// the lifecycle manager's words, is counted under one of a fixed set of
// labels (stopReasons).
func (m *Metrics) AppStopped(app, reason string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.forgottenLocked(app) {
		return
	}
	m.stops.WithLabelValues(app, stopLabel(reason)).Inc()
}

// ConnectionClosed counts a finished spliced connection and its bytes: in
// from the client to the app, out back to the client. Once per
// connection, not per read.
func (m *Metrics) ConnectionClosed(app string, in, out int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.forgottenLocked(app) {
		return
	}
	m.connections.WithLabelValues(app).Inc()
	m.bytes.WithLabelValues(app, "in").Add(float64(in))
	m.bytes.WithLabelValues(app, "out").Add(float64(out))
}

// ConnectionTurnedAway counts a connection that could not wake app
// (wake_from) and was closed.
func (m *Metrics) ConnectionTurnedAway(app string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.forgottenLocked(app) {
		return
	}
	m.turnedAway.WithLabelValues(app).Inc()
}

// ConnectionRefused counts a client connection closed without being
// served, for reason (a fixed set, see l4.Refusal).
func (m *Metrics) ConnectionRefused(app, reason string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.forgottenLocked(app) {
		return
	}
	m.refused.WithLabelValues(app, reason).Inc()
}

// ReloadErrors counts app files that failed to load.
func (m *Metrics) ReloadErrors(n int) {
	m.reloadErrors.Add(float64(n))
}

// Forget drops a removed app's series, and ignores the events that still
// come for it (its last stop, its last connections ending) until Keep.
func (m *Metrics) Forget(app string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgotten[app] = struct{}{}
	l := prometheus.Labels{"app": app}
	m.starts.DeletePartialMatch(l)
	m.stops.DeletePartialMatch(l)
	m.coldStart.DeletePartialMatch(l)
	m.connections.DeletePartialMatch(l)
	m.bytes.DeletePartialMatch(l)
	m.turnedAway.DeletePartialMatch(l)
	m.udp.forget(l)
	m.refused.DeletePartialMatch(l)
}

// Keep counts the events of an app added (back) from now on, undoing
// Forget. Apps never forgotten are counted without it.
func (m *Metrics) Keep(app string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.forgotten, app)
}

// forgottenLocked tells whether app's events are ignored. The caller holds
// m.mu (read) until it has counted the event, so that Forget cannot drop
// the series in between and the count bring it back.
func (m *Metrics) forgottenLocked(app string) bool {
	_, ok := m.forgotten[app]
	return ok
}
