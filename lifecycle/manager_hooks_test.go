package lifecycle

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// recordedEvents is an Events that keeps what it is told.
type recordedEvents struct {
	mu     sync.Mutex
	events []string
	cold   []time.Duration
}

func (r *recordedEvents) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recordedEvents) AppStarted(app, reason string) { r.add("started " + app + " " + reason) }
func (r *recordedEvents) AppStopped(app, reason string) { r.add("stopped " + app + " " + reason) }
func (r *recordedEvents) AppReady(app string, d time.Duration) {
	r.mu.Lock()
	r.cold = append(r.cold, d)
	r.mu.Unlock()
	r.add("ready " + app)
}

func (r *recordedEvents) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func TestEventsReportStartsReadyAndStopsWithReasons(t *testing.T) {
	ev := &recordedEvents{}
	h := newHarness(t, func(c *Config) { c.Events = ev })
	h.m.Apply([]*appfile.Spec{h.spec("web"), h.spec("bad", "-crash")})

	_, release := h.wake("web")
	release()
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Stop(ctx, "web", "manual"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Start(ctx, "bad", "manual"); err == nil {
		t.Fatal("start of a crashing app succeeded")
	}
	want := []string{"started web connection", "ready web", "stopped web manual", "started bad manual", "stopped bad failed"}
	if got := ev.get(); !slices.Equal(got, want) {
		t.Fatalf("events = %q, want %q", got, want)
	}
	if ev.cold[0] <= 0 {
		t.Errorf("cold start = %v", ev.cold[0])
	}
}

// pipeLogs is a LogOpener like the daemon's rotating one: each start gets
// the write end of a pipe, copied into one buffer per app.
type pipeLogs struct {
	mu   sync.Mutex
	bufs map[string]*strings.Builder
	wg   sync.WaitGroup
}

func (p *pipeLogs) Open(app string) (*os.File, func(context.Context) error, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	if p.bufs[app] == nil {
		p.bufs[app] = &strings.Builder{}
	}
	b := p.bufs[app]
	p.mu.Unlock()
	done := make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(done)
		defer r.Close()
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			p.mu.Lock()
			b.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return w, func(ctx context.Context) error {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

func (p *pipeLogs) text(app string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.bufs[app]; b != nil {
		return b.String()
	}
	return ""
}

func TestLogOpenerGetsTheOutputAndItsCopyEnds(t *testing.T) {
	logs := &pipeLogs{bufs: map[string]*strings.Builder{}}
	h := newHarness(t, func(c *Config) { c.Logs = logs })
	h.m.Apply([]*appfile.Spec{h.spec("bad", "-crash")})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Start(ctx, "bad", "manual"); err == nil {
		t.Fatal("start of a crashing app succeeded")
	}
	// The Manager closed its write end, the program is gone: the copy
	// ended (wg), with the header and the program's words in it.
	waited := make(chan struct{})
	go func() { logs.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(mgrWait):
		t.Fatal("the log copy did not end: a write end is still open")
	}
	text := logs.text("bad")
	if !strings.HasPrefix(text, startHeader) || !strings.Contains(text, "crashing on purpose") {
		t.Fatalf("log = %q", text)
	}
}
