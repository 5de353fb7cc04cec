package memory

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"strconv"
)

// Meminfo holds the fields of /proc/meminfo the policy needs, in bytes.
type Meminfo struct {
	// Total is MemTotal.
	Total int64
	// Available is MemAvailable: the kernel's estimate of memory that can be
	// given to new work without swapping.
	Available int64
}

// meminfoPath is a constant, not a variable: tests read the real file.
const meminfoPath = "/proc/meminfo"

// ReadMeminfo reads MemTotal and MemAvailable from /proc/meminfo.
func ReadMeminfo() (Meminfo, error) {
	b, _, err := readProcFile(meminfoPath, make([]byte, 2048))
	if err != nil {
		err = &fs.PathError{Op: "read", Path: meminfoPath, Err: err}
		return Meminfo{}, fmt.Errorf("reading meminfo: %w", err)
	}
	return parseMeminfo(b)
}

// parseMeminfo parses the text of /proc/meminfo. Both fields are required:
// MemAvailable exists since Linux 3.14, and guessing it from MemFree would
// make the floor meaningless.
func parseMeminfo(b []byte) (Meminfo, error) {
	var mi Meminfo
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() && !(haveTotal && haveAvail) {
		key, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(key) {
		case "MemTotal":
			dst, haveTotal = &mi.Total, true
		case "MemAvailable":
			dst, haveAvail = &mi.Available, true
		default:
			continue
		}
		v, err := parseKB(rest)
		if err != nil {
			return Meminfo{}, fmt.Errorf("parsing meminfo %s: %w", key, err)
		}
		*dst = v
	}
	if !haveTotal || !haveAvail {
		return Meminfo{}, fmt.Errorf("parsing meminfo: MemTotal or MemAvailable missing")
	}
	return mi, nil
}

// parseKB parses "   24684096 kB" into bytes.
func parseKB(b []byte) (int64, error) {
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty value")
	}
	n, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		return 0, err
	}
	if len(f) > 1 && string(f[1]) == "kB" {
		n *= 1024
	}
	return n, nil
}

// MeminfoReader is the Monitor's default Reader: it reads /proc/meminfo.
type MeminfoReader struct{}

// Available returns MemAvailable and MemTotal in bytes.
func (MeminfoReader) Available() (avail, total int64, err error) {
	mi, err := ReadMeminfo()
	if err != nil {
		return 0, 0, err
	}
	return mi.Available, mi.Total, nil
}
