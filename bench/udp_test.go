package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseChildrenReadsPidsAndSkipsJunk(t *testing.T) {
	got := parseChildren("4101 4102 \n")
	if len(got) != 2 || got[0] != 4101 || got[1] != 4102 {
		t.Errorf("children %v, want [4101 4102]", got)
	}
	if got := parseChildren(""); len(got) != 0 {
		t.Errorf("children of none %v, want none", got)
	}
	if got := parseChildren("x 0 -3 7"); len(got) != 1 || got[0] != 7 {
		t.Errorf("children %v, want [7]", got)
	}
}

func TestPercentileIsTheNearestRank(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	if got := percentile(ds, 50); got != 5 {
		t.Errorf("p50 %v, want 5", got)
	}
	if got := percentile(ds, 99); got != 10 {
		t.Errorf("p99 %v, want 10", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of none %v, want 0", got)
	}
	if ds[0] != 5 {
		t.Error("percentile sorted its argument")
	}
}

// TestNginxAcceptsTheGeneratedConfig checks the configuration with the
// real nginx (nginx -t), where it and its stream module are installed.
func TestNginxAcceptsTheGeneratedConfig(t *testing.T) {
	if lookTool("nginx") == "" || lookTool("ngx_stream_module") == "" {
		t.Skip("nginx or libnginx-mod-stream is not installed")
	}
	dir := t.TempDir()
	conf := nginxConfig(dir, 2, [][2]string{{freeUDPAddr(), "127.0.0.1:9"}})
	for _, want := range []string{"worker_processes 2;", "udp reuseport;", "proxy_timeout 60s;", "load_module " + nginxStreamModule} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nginx", "-t", "-p", dir, "-e", filepath.Join(dir, "nginx.log"), "-c", path).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// udpEcho runs the UDP backend's echo on a socket of its own until the
// test ends.
func udpEcho(t *testing.T) string {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- echoUDP(c) }()
	t.Cleanup(func() {
		c.Close()
		if err := <-done; err == nil {
			t.Error("echo ended without an error")
		}
	})
	return c.LocalAddr().String()
}

func TestUDPLoadCountsEveryReplyAndTimesOneAtATime(t *testing.T) {
	addr := udpEcho(t)
	r, err := runUDP(addr, udpLoad{clients: 3, window: 4, max: 500}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.replies != 1500 || r.lost != 0 || len(r.rtts) != 0 {
		t.Errorf("%d replies, %d lost, %d round trips; want 1500 (3 clients × max 500), none lost, none timed", r.replies, r.lost, len(r.rtts))
	}
	one, err := runUDP(addr, udpLoad{clients: 1, window: 1, max: 200}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if one.replies != 200 || len(one.rtts) != 200 || percentile(one.rtts, 50) <= 0 {
		t.Errorf("%d replies, %d round trips (p50 %v); want 200 timed", one.replies, len(one.rtts), percentile(one.rtts, 50))
	}
}

func TestUDPLoadCountsAnUnansweredWindowAsLost(t *testing.T) {
	// A socket that reads and never answers.
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := runUDP(c.LocalAddr().String(), udpLoad{clients: 1, window: 4, max: 10}, udpLossWait/2)
	if err == nil || r.replies != 0 || r.lost != 4 {
		t.Errorf("replies %d, lost %d, err %v; want one window of 4 lost and an error for no reply", r.replies, r.lost, err)
	}
}

func TestUDPLoadCountsALateReplyOnceAndSendsNothingForIt(t *testing.T) {
	// A socket that answers the first datagram only after the client
	// gave its window up, then echoes at once.
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			done <- err
			return
		}
		late := append([]byte(nil), buf[:n]...)
		// The client's second window (epoch 1) is its sign of giving up.
		for {
			m, f, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				done <- err
				return
			}
			if buf[0] == 1 {
				_, _ = c.WriteToUDPAddrPort(late, from)
				_, _ = c.WriteToUDPAddrPort(buf[:m], f)
				break
			}
		}
		done <- echoUDP(c)
	}()
	r, err := runUDP(c.LocalAddr().String(), udpLoad{clients: 1, window: 1, max: 20}, 10*time.Second)
	c.Close()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	// The late reply counts, and is not timed; the window it was in is
	// not lost.
	if r.replies != 20 || r.lost != 0 || len(r.rtts) != 19 {
		t.Errorf("%d replies, %d lost, %d timed; want 20, 0, 19", r.replies, r.lost, len(r.rtts))
	}
}

// The program answers only once it has seen two polls go unanswered (a
// port still unbound, then bound by a program not yet serving): the poll
// must return after that, not at its first send or refusal.
func TestUDPPollReplyWaitsForTheProgramToBind(t *testing.T) {
	addr := freeUDPAddr()
	la, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		d   time.Duration
		err error
	}
	polled := make(chan result, 1)
	start := time.Now()
	go func() {
		d, err := udpPollReply(start, addr, 10*time.Second)
		polled <- result{d, err}
	}()
	silent, err := net.ListenUDP("udp", la)
	if err != nil {
		t.Fatalf("binding the free address: %v", err)
	}
	buf := make([]byte, 2048)
	for i := range 2 {
		_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := silent.ReadFromUDP(buf); err != nil {
			silent.Close()
			t.Fatalf("poll %d never came: %v", i+1, err)
		}
	}
	silent.Close()
	answering := time.Since(start)
	c, err := net.ListenUDP("udp", la)
	if err != nil {
		t.Fatalf("binding the free address again: %v", err)
	}
	echoed := make(chan struct{})
	go func() {
		defer close(echoed)
		_ = echoUDP(c)
	}()
	r := <-polled
	c.Close()
	<-echoed
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.d < answering {
		t.Errorf("answered after %v, before the program answered (%v)", r.d, answering)
	}
	if _, err := udpPollReply(time.Now(), freeUDPAddr(), 5*time.Millisecond); err == nil {
		t.Error("a port nobody binds answered")
	}
}

func TestRowsOfOtherTargetsGetATableOfTheirOwn(t *testing.T) {
	rep := &report{}
	warm := scenarioRows{rep: rep, scenario: "keep-alive", samples: map[string][]sample{
		direct: {{value: 100}}, dynapm: {{value: 90}}, haproxy: {{value: 80}},
	}}
	warm.add(warmRow{metric: "requests"}, func(s sample) float64 { return s.value }, true)
	ho := scenarioRows{rep: rep, scenario: "handoff, keep-alive", cols: handoffTargets, section: sectionHandoff,
		samples: map[string][]sample{direct: {{value: 100}, {value: 100}}, socketT: {{value: 98}, {value: 96}}, proxyT: {{value: 50}, {value: 60}}}}
	ho.add(warmRow{metric: "requests", key: keyHandoffKA}, func(s sample) float64 { return s.value }, true)
	ts := rep.warmTables()
	if len(ts) != 2 || ts[0].section != "" || ts[1].section != sectionHandoff {
		t.Fatalf("tables %+v, want the warm path's and the hand-off's", ts)
	}
	cells := ts[1].cells()
	if got := strings.Join(cells[0], ","); got != "scenario,metric,direct,socket,proxy,socket/direct,proxy/direct,socket/proxy,goal" {
		t.Errorf("hand-off header %s", got)
	}
	if got := cells[1][5]; got != "0.97 (0.96–0.98)" {
		t.Errorf("socket/direct cell %q, want 0.97 (0.96–0.98)", got)
	}
	lost := warmRow{metric: "lost", noRatios: true, cols: handoffTargets}
	lost.add(direct, []float64{0, 1})
	lost.add(socketT, []float64{1, 1})
	if got := strings.Join(lost.cells()[5:8], ","); got != "–,–,–" {
		t.Errorf("ratio cells of a row without ratios: %s", got)
	}
	md := rep.markdown("bench.svg")
	if !strings.Contains(md, "### "+sectionHandoff) || !strings.Contains(md, sectionText[sectionHandoff]) {
		t.Error("the markdown has no hand-off section with its text")
	}
	got := map[string]goalRow{}
	for _, g := range rep.goals() {
		got[g.measure] = g
	}
	if g := got["handoff: socket, keep-alive requests/s (issue 25)"]; g.verdict != "met" || !strings.Contains(g.measured, "0.97 (0.96–0.98) of direct") {
		t.Errorf("hand-off goal %+v, want met at 0.97 (0.96–0.98) of direct", g)
	}
}

func TestUDPGoalsCompareWithNginx(t *testing.T) {
	rate := warmRow{key: keyUDPRate}
	rate.add(dynapm, []float64{110, 90})
	rate.add(nginxT, []float64{100, 100})
	cpu := warmRow{key: keyUDPCPU, unit: "µs"}
	cpu.add(dynapm, []float64{30, 30})
	cpu.add(nginxT, []float64{25, 27})
	rep := &report{warm: []warmRow{rate, cpu}}
	got := map[string]goalRow{}
	for _, g := range rep.goals() {
		got[g.measure] = g
	}
	if g := got["UDP datagrams/s, "+udpThroughput.String()+" (issue 24)"]; g.verdict != "met" || !strings.Contains(g.measured, "of nginx") {
		t.Errorf("rate goal %+v, want met (median 1.00 of nginx)", g)
	}
	if g := got["UDP proxy CPU per datagram (issue 24)"]; g.verdict != "not met" || !strings.HasPrefix(g.measured, "dynapm 30") {
		t.Errorf("CPU goal %+v, want not met (30 over 26 µs)", g)
	}
}
