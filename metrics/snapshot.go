package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynapm/dynapm/admin"
)

// snapshot turns the apps' status into gauges at scrape time.
type snapshot struct {
	apps func() []admin.App
}

// The states an app can be in, for dynapm_app_state (one series each, 1
// for the current state), in lifecycle's spelling.
var states = []string{"stopped", "starting", "ready", "stopping", "failed"}

var (
	appsDesc    = prometheus.NewDesc("dynapm_apps", "Configured apps.", nil, nil)
	stateDesc   = prometheus.NewDesc("dynapm_app_state", "1 for the app's current state.", []string{"app", "state"}, nil)
	openDesc    = prometheus.NewDesc("dynapm_app_open_connections", "Open connections of the app: spliced to it (handoff proxy), established on its ports as the kernel counts them (socket), or programs running, one per connection (inetd).", []string{"app"}, nil)
	handoffDesc = prometheus.NewDesc("dynapm_app_handoff", "1 for who accepts the app's connections: proxy (DynaPM), socket (the program, from the sockets passed to it) or inetd (a program per connection).", []string{"app", "handoff"}, nil)
	heldDesc    = prometheus.NewDesc("dynapm_app_held_connections", "Connections held while the app starts.", []string{"app"}, nil)
	rssDesc     = prometheus.NewDesc("dynapm_app_rss_bytes", "Resident memory of the app's processes.", []string{"app"}, nil)
	uptimeDesc  = prometheus.NewDesc("dynapm_app_uptime_seconds", "Seconds since the running program was spawned; 0 when stopped.", []string{"app"}, nil)
	restartDesc = prometheus.NewDesc("dynapm_app_restarts_total", "Starts that replaced a running program (reload, restart, crash recovery), since the daemon started.", []string{"app"}, nil)
)

// Describe sends the descriptions of the gauges.
func (s *snapshot) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{appsDesc, stateDesc, handoffDesc, openDesc, heldDesc, rssDesc, uptimeDesc, restartDesc} {
		ch <- d
	}
}

// Collect reads the status once and sends every gauge.
func (s *snapshot) Collect(ch chan<- prometheus.Metric) {
	apps := s.apps()
	ch <- prometheus.MustNewConstMetric(appsDesc, prometheus.GaugeValue, float64(len(apps)))
	for _, a := range apps {
		for _, st := range states {
			v := 0.0
			if a.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, a.Name, st)
		}
		if a.Handoff != "" {
			ch <- prometheus.MustNewConstMetric(handoffDesc, prometheus.GaugeValue, 1, a.Name, a.Handoff)
		}
		ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, float64(a.Connections), a.Name)
		ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(a.Pending), a.Name)
		ch <- prometheus.MustNewConstMetric(rssDesc, prometheus.GaugeValue, float64(a.RSSBytes), a.Name)
		ch <- prometheus.MustNewConstMetric(uptimeDesc, prometheus.GaugeValue, a.UptimeSeconds, a.Name)
		ch <- prometheus.MustNewConstMetric(restartDesc, prometheus.CounterValue, float64(a.Restarts), a.Name)
	}
}
