package memory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"syscall"
)

// PSI is the "some" line of /proc/pressure/memory: the share of time in
// which at least one task stalled waiting for memory.
type PSI struct {
	// SomeAvg10 is the percentage of the last 10 seconds with a stall.
	SomeAvg10 float64
	// SomeTotal is the total stall time in microseconds since boot.
	SomeTotal uint64
}

const psiPath = "/proc/pressure/memory"

// ReadPSI reads memory pressure stall information. ok is false, with a nil
// error, when the kernel does not offer it (no file, or PSI disabled at boot,
// which makes reads fail with EOPNOTSUPP): PSI only lets the Monitor react
// sooner and is never required.
func ReadPSI() (p PSI, ok bool, err error) {
	b, _, err := readProcFile(psiPath, make([]byte, 256))
	if err != nil {
		err = &fs.PathError{Op: "read", Path: psiPath, Err: err}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EOPNOTSUPP) {
			return PSI{}, false, nil
		}
		return PSI{}, false, fmt.Errorf("reading memory pressure: %w", err)
	}
	p, err = parsePSI(b)
	if err != nil {
		return PSI{}, false, err
	}
	return p, true, nil
}

// parsePSI parses "some avg10=0.00 avg60=0.00 avg300=0.00 total=0".
func parsePSI(b []byte) (PSI, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 || string(f[0]) != "some" {
			continue
		}
		var p PSI
		var haveAvg, haveTotal bool
		for _, kv := range f[1:] {
			k, v, ok := bytes.Cut(kv, []byte("="))
			if !ok {
				continue
			}
			var err error
			switch string(k) {
			case "avg10":
				p.SomeAvg10, err = strconv.ParseFloat(string(v), 64)
				haveAvg = true
			case "total":
				p.SomeTotal, err = strconv.ParseUint(string(v), 10, 64)
				haveTotal = true
			}
			if err != nil {
				return PSI{}, fmt.Errorf("parsing memory pressure %s: %w", k, err)
			}
		}
		if !haveAvg || !haveTotal {
			return PSI{}, fmt.Errorf("parsing memory pressure: avg10 or total missing")
		}
		return p, nil
	}
	return PSI{}, fmt.Errorf("parsing memory pressure: no \"some\" line")
}
