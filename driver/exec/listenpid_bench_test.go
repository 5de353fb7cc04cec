package execdriver

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/driver/exec/spawner"
	"github.com/dynapm/dynapm/lifecycle"
)

// BenchmarkHandoffStart measures what handing a socket off adds to a
// program's start, from the call to Start to the first byte the program
// writes (/bin/echo): a start without sockets forked here (plain) and
// through the spawner helper (helper), a handed-off start traced from
// here (traced) and by the helper (helper-traced), and one through the
// shell. The five alternate in a rotating order; it reports
// the medians and the medians of the paired differences over plain. With
// 10,000 listening sockets open, as a daemon with 10,000 apps holds them,
// a fork from here pays for each at exec and the helper does not.
//
//	go test -run '^$' -bench HandoffStart -benchtime 200x ./driver/exec
func BenchmarkHandoffStart(b *testing.B) {
	for _, n := range []int{0, 10000} {
		b.Run("sockets="+strconv.Itoa(n), func(b *testing.B) { benchHandoffStart(b, n) })
	}
}

func benchHandoffStart(b *testing.B, sockets int) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	helper, err := spawner.Start(exe) // before the sockets, as the daemon does
	if err != nil {
		b.Fatal(err)
	}
	defer helper.Close()
	for range sockets {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Skipf("opening %d sockets: %v", sockets, err)
		}
		defer syscall.Close(fd)
	}
	d := New(slog.New(slog.DiscardHandler))
	defer d.Close()
	sock, _ := listenSocket(b)
	ways := []string{"plain", "helper", "traced", "helper-traced", "shell"}
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
		if way != "plain" && way != "helper" {
			req.Sockets = []*os.File{sock}
		}
		d.mu.Lock()
		d.listenPIDByShell = way == "shell"
		d.spawner = nil
		if way == "helper" || way == "helper-traced" {
			d.spawner = helper
		}
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
