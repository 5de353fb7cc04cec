package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkLoad is one wrk invocation's shape.
type wrkLoad struct {
	threads, conns int
	close          bool   // send "Connection: close": one connection per request
	host           string // send this Host header instead of the URL's
}

func (l wrkLoad) args(url string, d time.Duration) []string {
	a := []string{fmt.Sprintf("-t%d", l.threads), fmt.Sprintf("-c%d", l.conns),
		fmt.Sprintf("-d%ds", int(d.Round(time.Second)/time.Second)), "--latency"}
	if l.close {
		a = append(a, "-H", "Connection: close")
	}
	if l.host != "" {
		a = append(a, "-H", "Host: "+l.host)
	}
	return append(a, url)
}

// command is the wrk command line as a user would type it.
func (l wrkLoad) command(d time.Duration) string {
	var b strings.Builder
	b.WriteString("wrk")
	for _, a := range l.args("http://127.0.0.1:PORT/", d) {
		if strings.Contains(a, " ") {
			a = "'" + a + "'"
		}
		b.WriteString(" " + a)
	}
	return b.String()
}

// wrkResult is what one wrk run reported.
type wrkResult struct {
	requests float64
	rate     float64 // requests per second
	p50, p99 time.Duration
	errors   int64 // socket errors and non-2xx answers
}

// runWrk runs wrk against url for d and parses its report.
func runWrk(ctx context.Context, load wrkLoad, url string, d time.Duration) (wrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "wrk", load.args(url, d)...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("running wrk: %w\n%s", err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rate, _ = strconv.ParseFloat(f[1], 64)
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.requests, _ = strconv.ParseFloat(f[0], 64)
		case len(f) == 2 && f[0] == "50%":
			r.p50 = parseWrkDuration(f[1])
		case len(f) == 2 && f[0] == "99%":
			r.p99 = parseWrkDuration(f[1])
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:":
			// "Socket errors: connect 0, read 0, write 0, timeout 0"
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				r.errors += n
			}
		case len(f) == 4 && f[0] == "Non-2xx":
			n, _ := strconv.ParseInt(f[3], 10, 64)
			r.errors += n
		}
	}
	if r.rate == 0 || r.requests == 0 {
		return r, fmt.Errorf("parsing wrk output:\n%s", out)
	}
	return r, nil
}

// parseWrkDuration reads wrk's "123.45us", "1.20ms", "2.00s", "1.00m".
func parseWrkDuration(s string) time.Duration {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"m", time.Minute}, {"s", time.Second}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return time.Duration(f * float64(u.unit))
		}
	}
	return 0
}
