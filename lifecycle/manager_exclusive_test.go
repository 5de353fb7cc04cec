package lifecycle

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// Waking B while A of its exclusive group runs stops A (reason
// exclusive) before B's program starts, as the programs' own stamps say;
// waking A again does the same the other way.
func TestExclusiveWakeStopsTheRunningAppFirst(t *testing.T) {
	h := newHarness(t)
	file := filepath.Join(t.TempDir(), "stamps")
	a, b := h.stamped("a", file), h.stamped("b", file)
	a.Exclusive, b.Exclusive = "gpu", "gpu"
	h.m.Apply([]*appfile.Spec{a, b})
	_, release := h.wake("a")
	release()
	up, release := h.wake("b")
	defer release()
	if got := echo(t, up, "b"); got != "b" {
		t.Fatalf("echo through b = %q", got)
	}
	if st := h.status("a"); st.State != Stopped {
		t.Fatalf("a while b runs: %s", fmtStatus(st))
	}
	_, at := stamps(t, file)
	if !at["a term"].Before(at["b start"]) {
		t.Fatalf("a told to stop at %v, b started at %v: want a gone first", at["a term"], at["b start"])
	}
	h.waitLog(`msg="app stopped"`, "app=a", "reason=exclusive")

	up, releaseA := h.wake("a")
	defer releaseA()
	if got := echo(t, up, "a"); got != "a" {
		t.Fatalf("echo through a = %q", got)
	}
	if st := h.status("b"); st.State != Stopped {
		t.Fatalf("b after a was woken again: %s", fmtStatus(st))
	}
}

// Two apps of a group woken at once: each one's held connection is served
// by its own program (it drains until SIGKILL at stop_timeout), and at the
// end one of them runs.
func TestExclusiveHeldConnectionsReachTheirOwnProgram(t *testing.T) {
	h := newHarness(t)
	specs := map[string]*appfile.Spec{}
	for _, name := range []string{"a", "b"} {
		s := h.spec(name, "-mode", "http", "-ignore-term", "-delay", "100ms")
		s.Env = map[string]string{"GREETING": name}
		s.Exclusive = "gpu"
		s.StopTimeout = time.Second
		specs[name] = s
	}
	h.m.Apply([]*appfile.Spec{specs["a"], specs["b"]})
	type result struct {
		name, body string
		err        error
	}
	results := make(chan result, 2)
	for _, name := range []string{"a", "b"} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
			defer cancel()
			up, release, err := h.m.Wake(ctx, name)
			if err != nil {
				results <- result{name, "", err}
				return
			}
			defer release()
			body, err := get(up)
			results <- result{name, body, err}
		}()
	}
	for range 2 {
		r := <-results
		if r.err != nil || r.body != "ok "+r.name {
			t.Errorf("client of %s got %q, %v; want %q", r.name, r.body, r.err, "ok "+r.name)
		}
	}
	running := 0
	for _, name := range []string{"a", "b"} {
		if st := h.status(name); st.State == Ready {
			running++
		}
	}
	if running > 1 {
		t.Fatalf("%d apps of the group ready at once", running)
	}
}

// get sends GET / to up and returns the body.
func get(up netip.AddrPort) (string, error) {
	// No keep-alive: no connection (and goroutine) outlives the request.
	c := &http.Client{Timeout: mgrWait, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + up.String() + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
