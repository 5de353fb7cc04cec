package metrics

import "github.com/prometheus/client_golang/prometheus"

// udpMetrics are the counters of UDP flows (l4.UDPObserver).
type udpMetrics struct {
	flows   *prometheus.CounterVec
	dropped *prometheus.CounterVec
}

func newUDPMetrics() udpMetrics {
	return udpMetrics{
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynapm_app_udp_flows_total",
			Help: "UDP flows (one per client address) to the app, counted when they end; their bytes count in dynapm_app_bytes_total.",
		}, []string{"app"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynapm_app_udp_dropped_datagrams_total",
			Help: "Datagrams for the app dropped: its queue was full while it woke, or it could not be woken.",
		}, []string{"app"}),
	}
}

func (u udpMetrics) forget(l prometheus.Labels) {
	u.flows.DeletePartialMatch(l)
	u.dropped.DeletePartialMatch(l)
}

// FlowClosed counts a finished UDP flow and its bytes: in from the client
// to the app, out back to the client.
func (m *Metrics) FlowClosed(app string, in, out int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.forgottenLocked(app) {
		return
	}
	m.udp.flows.WithLabelValues(app).Inc()
	m.bytes.WithLabelValues(app, "in").Add(float64(in))
	m.bytes.WithLabelValues(app, "out").Add(float64(out))
}

// DatagramsDropped counts n datagrams for app dropped.
func (m *Metrics) DatagramsDropped(app string, n int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.forgottenLocked(app) {
		return
	}
	m.udp.dropped.WithLabelValues(app).Add(float64(n))
}
