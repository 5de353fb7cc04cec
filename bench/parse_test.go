package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const wrkOutput = `Running 5s test @ http://127.0.0.1:8080/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms    1.10ms  30.00ms   90.00%
    Req/Sec    24.00k     2.00k   30.00k    70.00%
  Latency Distribution
     50%  606.00us
     75%    1.00ms
     90%    2.00ms
     99%   11.04ms
  286400 requests in 5.00s, 20.00MB read
  Socket errors: connect 0, read 3, write 1, timeout 0
Requests/sec:  57280.00
Transfer/sec:      4.00MB
`

func TestParseWrkReadsRateLatencyAndErrors(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.rate != 57280 || r.requests != 286400 {
		t.Errorf("rate %v requests %v, want 57280 and 286400", r.rate, r.requests)
	}
	if r.p50 != 606*time.Microsecond || r.p99 != 11040*time.Microsecond {
		t.Errorf("p50 %v p99 %v, want 606µs and 11.04ms", r.p50, r.p99)
	}
	if r.errors != 4 {
		t.Errorf("errors %d, want 4", r.errors)
	}
}

func TestParseWrkRejectsOutputWithoutRate(t *testing.T) {
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Fatal("no error for wrk output without a rate")
	}
}

func TestHTTPBackendAnswersPipelinedRequestsAndClose(t *testing.T) {
	in := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /never")
	out, closing, used := answer(in, nil)
	if !closing {
		t.Error("Connection: close not honoured")
	}
	if want := string(respKeepAlive) + string(respClose); string(out) != want {
		t.Errorf("answers %q, want %q", out, want)
	}
	if used != len(in)-len("GET /never") {
		t.Errorf("consumed %d bytes, want %d", used, len(in)-len("GET /never"))
	}
}

func TestWriteMarkdownKeepsTextOutsideMarkers(t *testing.T) {
	r := &report{started: time.Now(), warm: []warmRow{{scenario: "keep-alive", metric: "requests", unit: "req/s",
		values: map[string]float64{direct: 100, dynapm: 80, haproxy: 70}, chart: "keep-alive req/s"}}}
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte("# Title\n\nhand-written\n\n"+beginMarker+"\nold\n"+endMarker+"\n\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.writeMarkdown(path, filepath.Join(filepath.Dir(path), "bench.svg")); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	doc := string(data)
	for _, want := range []string{"hand-written", "after", "| keep-alive | requests (req/s) | 100.0 | 80.0 | 70.0 | 0.80 | 0.70 | 1.14 |", "](bench.svg)"} {
		if !strings.Contains(doc, want) {
			t.Errorf("markdown lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "\nold\n") {
		t.Error("the old generated part was kept")
	}
	if svg := r.svg(); !strings.Contains(svg, "0.80") || !strings.Contains(svg, "</svg>") {
		t.Errorf("chart lacks the dynapm bar:\n%s", svg)
	}
}

// The keep-alive rates of a run on 3 Dec, when every target ran at half
// speed during the second repetition: the ratio of the medians (0.79)
// compared dynapm's third repetition with haproxy's first.
func TestRatioIsTheMedianOfTheRepetitionsRatios(t *testing.T) {
	r := warmRow{values: map[string]float64{}}
	rate := func(s sample) float64 { return s.value }
	r.addRep(dynapm, []sample{{value: 40618}, {value: 23488}, {value: 30433}}, rate)
	r.addRep(haproxy, []sample{{value: 41219}, {value: 21153}, {value: 38591}}, rate)
	if got := r.values[dynapm]; got != 30433 {
		t.Errorf("dynapm's value %v, want the median 30433", got)
	}
	if got, want := r.ratio(dynapm, haproxy), 40618.0/41219; math.Abs(got-want) > 1e-9 {
		t.Errorf("ratio %.3f, want the median of the per-repetition ratios %.3f", got, want)
	}
	plain := warmRow{values: map[string]float64{dynapm: 3, haproxy: 4}}
	if got := plain.ratio(dynapm, haproxy); got != 0.75 {
		t.Errorf("ratio without repetitions %v, want 0.75", got)
	}
}
