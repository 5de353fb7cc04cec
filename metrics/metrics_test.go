package metrics

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dynapm/dynapm/admin"
	"github.com/dynapm/dynapm/internal/httpcap"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// status is a settable app status source.
type status struct {
	mu   sync.Mutex
	apps []admin.App
}

func (s *status) get() []admin.App {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]admin.App(nil), s.apps...)
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, b)
	}
	return string(b)
}

func serve(t *testing.T, m *Metrics) *Server {
	t.Helper()
	s, err := Serve("127.0.0.1:0", "", m, nil, httpcap.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

func requireLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		have[l] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("metrics lack %q", l)
		}
	}
}

func TestScrapeAfterAWakeAndAnIdleStop(t *testing.T) {
	st := &status{apps: []admin.App{
		{Name: "web", State: "ready", Connections: 2, Pending: 1, RSSBytes: 4096, UptimeSeconds: 12, Restarts: 1},
		{Name: "api", State: "stopped"},
	}}
	m := New(st.get)
	s := serve(t, m)

	m.AppStarted("web", "connection")
	m.AppReady("web", 300*time.Millisecond)
	m.ConnectionClosed("web", 100, 2500)
	m.ConnectionTurnedAway("web")
	m.AppStopped("web", "idle")
	m.ReloadErrors(2)

	out := scrape(t, s.Addr())
	requireLines(t, out,
		`dynapm_apps 2`,
		`dynapm_app_state{app="web",state="ready"} 1`,
		`dynapm_app_state{app="web",state="stopped"} 0`,
		`dynapm_app_state{app="api",state="stopped"} 1`,
		`dynapm_app_open_connections{app="web"} 2`,
		`dynapm_app_held_connections{app="web"} 1`,
		`dynapm_app_turned_away_total{app="web"} 1`,
		`dynapm_app_rss_bytes{app="web"} 4096`,
		`dynapm_app_uptime_seconds{app="web"} 12`,
		`dynapm_app_restarts_total{app="web"} 1`,
		`dynapm_app_starts_total{app="web",reason="connection"} 1`,
		`dynapm_app_stops_total{app="web",reason="idle"} 1`,
		`dynapm_app_connections_total{app="web"} 1`,
		`dynapm_app_bytes_total{app="web",direction="in"} 100`,
		`dynapm_app_bytes_total{app="web",direction="out"} 2500`,
		`dynapm_app_cold_start_seconds_count{app="web"} 1`,
		`dynapm_app_cold_start_seconds_bucket{app="web",le="0.32"} 1`,
		`dynapm_app_cold_start_seconds_bucket{app="web",le="0.16"} 0`,
		`dynapm_reload_errors_total 2`,
	)
	if !strings.Contains(out, "dynapm_process_resident_memory_bytes") || !strings.Contains(out, "go_goroutines") {
		t.Error("daemon process and Go runtime metrics missing")
	}

	// Gauges follow the status at each scrape.
	st.mu.Lock()
	st.apps = st.apps[1:]
	st.mu.Unlock()
	m.Forget("web")
	out = scrape(t, s.Addr())
	requireLines(t, out, `dynapm_apps 1`)
	if strings.Contains(out, `app="web"`) {
		t.Error("a forgotten app still has series")
	}

	// A removed app's last events come after Forget: they are ignored...
	m.AppStopped("web", "removed")
	m.ConnectionClosed("web", 1, 1)
	if out = scrape(t, s.Addr()); strings.Contains(out, `app="web"`) {
		t.Error("events after Forget brought a forgotten app's series back")
	}
	// ...until the app is added back.
	m.Keep("web")
	m.AppStarted("web", "connection")
	requireLines(t, scrape(t, s.Addr()), `dynapm_app_starts_total{app="web",reason="connection"} 1`)
}

func TestServeReportsABusyAddressAndItsSetting(t *testing.T) {
	m := New(func() []admin.App { return nil })
	s := serve(t, m)
	_, err := Serve(s.Addr(), "setting `metrics` in /etc/dynapm.yaml", m, nil, httpcap.Limits{})
	if err == nil {
		t.Fatal("second Serve on the same address succeeded")
	}
	want := "listening for metrics on " + s.Addr() + " (setting `metrics` in /etc/dynapm.yaml): "
	if !strings.HasPrefix(err.Error(), want) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("err = %v, want it to start %q and wrap EADDRINUSE", err, want)
	}
}

// The endpoint is bounded (internal/httpcap): an idle keep-alive
// connection is closed, and a scrape beyond the cap waits for it instead
// of being refused.
func TestMetricsEndpointClosesIdleConnectionsAndCapsThem(t *testing.T) {
	m := New(func() []admin.App { return nil })
	s, err := Serve("127.0.0.1:0", "", m, nil, httpcap.Limits{MaxConns: 1, IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	idle, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(idle, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(idle)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	got, err := c.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatalf("a scrape beside an idle connection at the cap: %v", err)
	}
	got.Body.Close()
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("the idle keep-alive connection: read %v, want EOF", err)
	}
}
