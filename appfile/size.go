package appfile

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units maps a size suffix (lowercased) to its multiplier. Binary and
// decimal units are both accepted because both appear in the wild
// (free -h prints Gi, disk vendors print GB).
var units = map[string]float64{
	"":    1,
	"b":   1,
	"k":   1 << 10,
	"kb":  1e3,
	"kib": 1 << 10,
	"m":   1 << 20,
	"mb":  1e6,
	"mib": 1 << 20,
	"g":   1 << 30,
	"gb":  1e9,
	"gib": 1 << 30,
	"t":   1 << 40,
	"tb":  1e12,
	"tib": 1 << 40,
}

// ParseBytes parses a size such as "512MiB", "4GiB", "1.5GB", "300 KB" or
// "1048576" (bytes). Units: B, KiB, MiB, GiB, TiB (powers of 1024), KB, MB,
// GB, TB (powers of 1000) and K, M, G, T (powers of 1024), any case. The
// result is never negative.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r == '.')
	})
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := units[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("expected a size such as 512MiB, 4GiB or 1000000, got %s", Quote(s))
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("expected a size such as 512MiB, 4GiB or 1000000, got %s", Quote(s))
	}
	v := math.Round(n * mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %s is too large", Quote(s))
	}
	return int64(v), nil
}

// ParseBytesValue accepts a byte count as the YAML, TOML and JSON parsers
// give it: a non-negative integral number, or a string with a unit for
// ParseBytes. The error says what was expected and what was found.
func ParseBytesValue(v any) (int64, error) {
	switch v := v.(type) {
	case string:
		return ParseBytes(v)
	case int:
		if v >= 0 {
			return int64(v), nil
		}
	case int64:
		if v >= 0 {
			return v, nil
		}
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), nil
		}
	case float64:
		if v >= 0 && v == math.Trunc(v) && v < math.MaxInt64 {
			return int64(v), nil
		}
	}
	return 0, fmt.Errorf("expected a size such as 512MiB or 4GiB, or 0, got %s", Describe(v))
}

// size accepts a byte count as a number or a string with a unit.
func (d *decoder) size(field string, v any) int64 {
	n, err := ParseBytesValue(v)
	if err != nil {
		d.errorf(field, "%v", err)
	}
	return n
}
