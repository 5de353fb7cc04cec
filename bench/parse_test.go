package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// redis-benchmark 7.0.15 -c 20 -n 20000 -t set,get --csv -q, on this
// machine.
const redisCSV7 = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","30165.91","0.437","0.064","0.311","0.911","2.783","16.383"
"GET","34305.32","0.362","0.040","0.255","0.655","2.599","31.519"
`

func TestParseRedisCSVReadsRateAndP50ByColumnName(t *testing.T) {
	tests, err := parseRedisCSV("WARNING: Could not fetch server CONFIG\n" + redisCSV7)
	if err != nil {
		t.Fatal(err)
	}
	if got := tests["SET"]; got.rps != 30165.91 || got.p50 != 0.311 {
		t.Errorf("SET %+v, want 30165.91 req/s and p50 0.311 ms", got)
	}
	if got := tests["GET"]; got.rps != 34305.32 || got.p50 != 0.255 {
		t.Errorf("GET %+v, want 34305.32 req/s and p50 0.255 ms", got)
	}
}

func TestParseRedisCSVReadsTheOldHeaderlessFormat(t *testing.T) {
	tests, err := parseRedisCSV("\"SET\",\"81300.81\"\n\"GET\",\"84033.61\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if tests["GET"].rps != 84033.61 || tests["SET"].rps != 81300.81 || tests["GET"].p50 != 0 {
		t.Errorf("tests %+v, want GET 84033.61 and SET 81300.81 without p50", tests)
	}
}

func TestParseRedisCSVRejectsMissingTestsAndBadNumbers(t *testing.T) {
	for name, out := range map[string]string{
		"no GET":     `"test","rps"` + "\n" + `"SET","100.0"` + "\n",
		"bad rps":    `"SET","fast"` + "\n" + `"GET","1"` + "\n",
		"error only": "Could not connect to Redis at 127.0.0.1:1: Connection refused\n",
	} {
		if _, err := parseRedisCSV(out); err == nil {
			t.Errorf("%s: no error for %q", name, out)
		}
	}
}

// pgbench 15.18 -S -n -c 8 -j 2 -T 2, on this machine.
const pgbench15 = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 49563
number of failed transactions: 0 (0.000%)
latency average = 0.314 ms
initial connection time = 57.746 ms
tps = 25439.596933 (without initial connection time)
`

// The summary of pgbench before PostgreSQL 14.
const pgbench13 = `transaction type: <builtin: select only>
number of transactions actually processed: 120000/120000
latency average = 0.400 ms
tps = 19000.000000 (including connections establishing)
tps = 20000.500000 (excluding connections establishing)
`

func TestParsePgbenchReadsTPSWithoutConnectionTime(t *testing.T) {
	r, err := parsePgbench(pgbench15)
	if err != nil {
		t.Fatal(err)
	}
	if r.tps != 25439.596933 || r.transactions != 49563 || r.failed != 0 || r.latency != 0.314 {
		t.Errorf("result %+v, want 25439.596933 tps, 49563 transactions, 0 failed, 0.314 ms", r)
	}
	old, err := parsePgbench(pgbench13)
	if err != nil {
		t.Fatal(err)
	}
	if old.tps != 20000.5 || old.transactions != 120000 {
		t.Errorf("old format %+v, want the excluding-connections 20000.5 tps and 120000 transactions", old)
	}
}

func TestParsePgbenchRejectsAFailedRun(t *testing.T) {
	out := "pgbench: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n"
	if _, err := parsePgbench(out); err == nil {
		t.Fatal("no error for pgbench output without tps")
	}
}

func TestParseProcStatSumsBusyFieldsOfAllCPUs(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice:
	// busy leaves out idle, iowait and guest (inside user already).
	data := []byte("cpu  100 2 30 1000 50 3 7 1 5 0\ncpu0 50 1 15 500 25 1 3 0 2 0\nintr 12345\nctxt 98765\nbtime 1\n")
	u, err := parseProcStat(data)
	if err != nil {
		t.Fatal(err)
	}
	if u.busy != 143*clockTick || u.softirq != 7*clockTick || u.ctxt != 98765 {
		t.Errorf("usage %+v, want busy 1.43s, softirq 70ms, ctxt 98765", u)
	}
	if _, err := parseProcStat([]byte("cpu0 1 2 3 4 5 6 7 8\n")); err == nil {
		t.Error("no error without the aggregate cpu and ctxt lines")
	}
}

func TestMachineUsageGrowsWithWork(t *testing.T) {
	before := readMachine()
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for readMachine().busy <= before.busy && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
	}
	if after := readMachine(); after.busy <= before.busy || after.ctxt < before.ctxt {
		t.Errorf("busy %v -> %v, ctxt %d -> %d after spinning (%d)", before.busy, after.busy, before.ctxt, after.ctxt, x)
	}
}

func TestRatioCellShowsMedianAndRangeOfTheRepetitions(t *testing.T) {
	r := warmRow{}
	r.add(dynapm, []float64{90, 120, 100})
	r.add(haproxy, []float64{100, 100, 100})
	if got, want := r.ratioCell(dynapm, haproxy), "1.00 (0.90–1.20)"; got != want {
		t.Errorf("cell %q, want %q", got, want)
	}
	one := warmRow{}
	one.add(dynapm, []float64{80})
	one.add(haproxy, []float64{100})
	if got := one.ratioCell(dynapm, haproxy); got != "0.80" {
		t.Errorf("cell of one repetition %q, want 0.80", got)
	}
}

func TestOverDirectSubtractsDirectOfTheSameRepetition(t *testing.T) {
	rep := &report{}
	rows := scenarioRows{rep: rep, scenario: "keep-alive", samples: map[string][]sample{
		direct:  {{machine: 2, ops: 100_000}, {machine: 4, ops: 100_000}},
		dynapm:  {{machine: 3, ops: 100_000}, {machine: 7, ops: 100_000}},
		haproxy: {{machine: 4, ops: 100_000}, {machine: 6, ops: 100_000}},
	}}
	rows.cpu("request", "µs", 1e6, "dynapm <= haproxy", keyKeepAliveCPU)
	w, ok := rep.find(keyKeepAliveCPU)
	if !ok {
		t.Fatal("no machine CPU over direct row")
	}
	// dynapm: 10 and 30 µs over direct; haproxy: 20 and 20.
	if got := w.reps[dynapm]; len(got) != 2 || math.Abs(got[0]-10) > 1e-9 || math.Abs(got[1]-30) > 1e-9 {
		t.Errorf("dynapm over direct %v, want [10 30]", got)
	}
	if _, has := w.values[direct]; has {
		t.Error("direct has a value over itself")
	}
	if got := w.ratio(dynapm, haproxy); math.Abs(got-1) > 1e-9 {
		t.Errorf("ratio %v, want the median of 0.5 and 1.5", got)
	}
	if len(rep.warm) != 3 {
		t.Errorf("%d rows, want proxy CPU, machine CPU and machine CPU over direct", len(rep.warm))
	}
}

func TestGoalsJudgeMediansAndBulkEveryRepetition(t *testing.T) {
	rep := &report{herd: herdResult{last: 130 * time.Millisecond, floor: 100 * time.Millisecond}}
	ka := warmRow{key: keyKeepAlive}
	ka.add(dynapm, []float64{110, 130, 100})
	ka.add(haproxy, []float64{100, 100, 100})
	bulk := warmRow{key: keyBulk}
	bulk.add(dynapm, []float64{80, 74, 90})
	bulk.add(direct, []float64{100, 100, 100})
	rep.warm = []warmRow{ka, bulk}
	got := map[string]goalRow{}
	for _, g := range rep.goals() {
		got[g.measure] = g
	}
	if g := got["keep-alive requests/s"]; g.verdict != "met" || !strings.Contains(g.measured, "1.10 (1.00–1.30)") {
		t.Errorf("keep-alive %+v, want met at a median of 1.10 (1.00–1.30)", g)
	}
	if g := got["bulk"]; g.verdict != "not met" || !strings.Contains(g.measured, "lowest 0.74") {
		t.Errorf("bulk %+v, want not met: one repetition at 0.74", g)
	}
	if g := got["herd, last served"]; g.verdict != "met" || !strings.HasPrefix(g.measured, "1.30 ×") {
		t.Errorf("herd %+v, want met at 1.30 × the floor", g)
	}
	if g := got["pgbench -S, 8 clients"]; g.verdict != notMeasured {
		t.Errorf("pgbench %+v, want not measured", g)
	}
	if math.IsNaN((herdResult{}).ratio()) == false {
		t.Error("a herd without a floor has a ratio")
	}
}

func TestPinRestrictsAProcessAndUnpinRestoresIt(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for i := 0; i < 1024 && cpu < 0; i++ {
		if all.IsSet(i) {
			cpu = i
		}
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	allowed := func() string {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	before := allowed()
	var one unix.CPUSet
	one.Set(cpu)
	if err := pin(cmd.Process.Pid, &one); err != nil {
		t.Fatal(err)
	}
	if got := allowed(); got != strconv.Itoa(cpu) {
		t.Errorf("pinned to %q, want %d", got, cpu)
	}
	if err := pin(cmd.Process.Pid, &all); err != nil {
		t.Fatal(err)
	}
	if got := allowed(); got != before {
		t.Errorf("unpinned to %q, want %q", got, before)
	}
}

func TestSchedOfCountsThisProcessCPU(t *testing.T) {
	if u := schedOf(os.Getpid()); u.cpu <= 0 {
		t.Errorf("schedstat of this process %+v: no CPU time", u)
	}
}

func TestMarkdownOpensWithTheGoalsTableOnlyWhenAGoalWasMeasured(t *testing.T) {
	r := &report{started: time.Now()}
	if md := r.markdown("bench.svg"); strings.Contains(md, "### Goals") {
		t.Error("a goals table for a run that measured none of them")
	}
	r.herd = herdResult{last: 150 * time.Millisecond, floor: 100 * time.Millisecond}
	md := r.markdown("bench.svg")
	if !strings.Contains(md, "### Goals") || !strings.Contains(md, "| herd, last served | at most 1.3 × the direct floor | 1.50 × ") ||
		!strings.Contains(md, "| not met |") {
		t.Errorf("goals table lacks the herd's 1.50, not met:\n%s", md)
	}
}

func TestRedisMajorReadsTheServerVersion(t *testing.T) {
	for in, want := range map[string]int{
		"Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0":  7,
		"Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=a3fdef44459b3ad6": 6,
		"": 0,
	} {
		if got := redisMajor(in); got != want {
			t.Errorf("redisMajor(%q) = %d, want %d", in, got, want)
		}
	}
}
