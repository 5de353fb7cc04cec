package execdriver

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/lifecycle"
)

// BenchmarkHandoffStart measures what handing a socket off adds to a
// program's start, from the call to Start to the first byte the program
// writes (/bin/echo): a start without sockets (plain), a handed-off start
// traced, and one through the shell. The three alternate in a rotating
// order; it reports the medians and the medians of the paired differences
// over plain.
//
//	go test -run '^$' -bench HandoffStart -benchtime 200x ./driver/exec
func BenchmarkHandoffStart(b *testing.B) {
	d := New(slog.New(slog.DiscardHandler))
	defer d.Close()
	sock, _ := listenSocket(b)
	ways := []string{"plain", "traced", "shell"}
	times := make(map[string][]time.Duration)
	start := func(way string) time.Duration {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		req := lifecycle.StartRequest{
			Spec: &appfile.Spec{Name: "bench", Command: []string{"/bin/echo", "x"}, Dir: "/"},
			Env:  []string{},
			Log:  w,
		}
		if way != "plain" {
			req.Sockets = []*os.File{sock}
		}
		d.mu.Lock()
		d.listenPIDByShell = way == "shell"
		d.mu.Unlock()
		t0 := time.Now()
		p, err := d.Start(context.Background(), req)
		w.Close()
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1)
		if _, err := r.Read(buf); err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		<-p.Done()
		return took
	}
	i := 0
	for b.Loop() {
		for k := range ways {
			way := ways[(i+k)%len(ways)]
			times[way] = append(times[way], start(way))
		}
		i++
	}
	for _, way := range ways {
		b.ReportMetric(float64(median(times[way]))/1e3, way+"-µs")
		if way != "plain" {
			diffs := make([]time.Duration, len(times[way]))
			for j := range diffs {
				diffs[j] = times[way][j] - times["plain"][j]
			}
			b.ReportMetric(float64(median(diffs))/1e3, way+"-over-plain-µs")
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
