package appfile

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decoder walks one file's raw map and collects every problem it finds, so
// that a user sees all of them at once rather than one per run of check.
type decoder struct {
	file  string
	errs  []error
	more  int             // problems past maxErrors, counted but not kept
	zones map[string]bool // time zones looked up, and whether they exist
	// upstreamProto is the suffix upstream was written with ("" without);
	// flowTimeoutSet: the file sets udp_flow_timeout. Both for crossChecks.
	upstreamProto  string
	flowTimeoutSet bool
}

// maxErrors is how many problems of one file are reported one by one: a
// file that is not an app file at all would otherwise fill check's output
// and the log with a line per line of it.
const maxErrors = 20

func (d *decoder) errorf(field, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		d.more++ // not formatted: a hostile file may hold thousands
		return
	}
	d.add(&FieldError{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) add(errs ...error) {
	for _, err := range errs {
		if len(d.errs) < maxErrors {
			d.errs = append(d.errs, err)
		} else {
			d.more++
		}
	}
}

func (d *decoder) err() error {
	errs := d.errs
	if d.more > 0 {
		errs = append(errs, &FieldError{File: d.file, Msg: fmt.Sprintf("and %d more problems", d.more)})
	}
	return errors.Join(errs...)
}

// join builds a dotted field name.
func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// Describe renders a value found in a parsed file for "expected X, got Y"
// messages (the settings file's decoder uses it too).
func Describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing (null)"
	case string:
		return Quote(v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	case time.Time:
		return v.Format(time.RFC3339) + " (a timestamp; quote it)"
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprintf("%v", v)
}

// mapping checks that v is a mapping whose keys are all in known.
func (d *decoder) mapping(field string, v any, known []string) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		d.errorf(field, "expected a mapping with keys %s, got %s", strings.Join(known, ", "), Describe(v))
		return nil, false
	}
	d.add(UnknownKeys(d.file, field, m, known)...)
	return m, true
}

// maxUnknownKeys is how many unknown keys of one mapping are named: a file
// that is not an app file (/etc/shadow linked into apps.d) has a key per
// line, and naming them all would copy it into the log.
const maxUnknownKeys = 3

// UnknownKeys reports the keys of m, the mapping at field ("" for the top
// level) of file, that are not in known: one *FieldError each, with the
// closest known key when one is near, for the first maxUnknownKeys in
// sorted order, and one counting the rest. The settings file's decoder
// uses it too.
func UnknownKeys(file, field string, m map[string]any, known []string) []error {
	var unknown []string
	for k := range m {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	var errs []error
	for i, k := range unknown {
		if i == maxUnknownKeys {
			errs = append(errs, &FieldError{File: file, Field: field, Msg: fmt.Sprintf(
				"and %d more unknown keys (known keys: %s)", len(unknown)-i, strings.Join(known, ", "))})
			break
		}
		hint := ""
		if s := closest(k, known); s != "" {
			hint = fmt.Sprintf("did you mean %s? ", s)
		}
		errs = append(errs, &FieldError{File: file, Field: join(field, Key(k)), Msg: fmt.Sprintf(
			"unknown key (%sknown keys: %s)", hint, strings.Join(known, ", "))})
	}
	return errs
}

// closest returns the known key within a small edit distance of k, if any:
// at most 2 edits, and fewer than half the key, so that "tcp" does not
// suggest "http".
func closest(k string, known []string) string {
	if len(k) > maxHintKey {
		return "" // no known key is near, and lowering a long one costs
	}
	lower := strings.ToLower(k)
	best, bestDist := "", 3
	for _, c := range known {
		if dist := editDistance(lower, c); dist < bestDist && 2*dist < len(c) {
			best, bestDist = c, dist
		}
	}
	return best
}

// maxHintKey bounds the keys closest and editDistance look at: a file's
// keys are not checked for length, so the work is capped.
const maxHintKey = 64

// editDistance is the Levenshtein distance between a and b, or MaxInt for
// a string longer than maxHintKey.
func editDistance(a, b string) int {
	if len(a) > maxHintKey || len(b) > maxHintKey {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// choice decodes field's value as one of names; want describes them in
// the errors, for a value that is no string or is none of them.
func choice[T ~string](d *decoder, field string, v any, want string, names ...T) (T, bool) {
	str, ok := d.str(field, v, want)
	if !ok {
		return "", false
	}
	if !slices.Contains(names, T(str)) {
		d.errorf(field, "expected %s, got %s", want, Quote(str))
		return "", false
	}
	return T(str), true
}

func (d *decoder) str(field string, v any, expected string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.errorf(field, "expected %s, got %s", expected, Describe(v))
	}
	return s, ok
}

// kindOf names the type of a value found in a parsed file, never the value
// itself: for messages about values that may be secret (environment
// values), which end up in the daemon's log.
func kindOf(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing (null)"
	case string:
		return "a string"
	case bool:
		return "true or false"
	case int, int64, uint64:
		return "an integer"
	case float64:
		if v == math.Trunc(v) {
			return "a large number"
		}
		return "a number with a fraction"
	case time.Time:
		return "a timestamp"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return "a value of another type"
}

// scalarText is a string, an integer or a boolean as a string. Argv words
// and environment values are strings, but a YAML user writing [sleep, 10]
// or {DEBUG: 1} means the text; floats are refused because their text is
// ambiguous (1.10 reads back as 1.1).
func scalarText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case int, int64, uint64:
		return fmt.Sprint(v), true
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1e15 {
			return strconv.FormatInt(int64(v), 10), true
		}
	}
	return "", false
}

// scalar is scalarText for an argv word, whose value the error shows.
func (d *decoder) scalar(field string, v any) (string, bool) {
	s, ok := scalarText(v)
	if !ok {
		d.errorf(field, "expected a string, got %s (quote it)", Describe(v))
	}
	return s, ok
}

// envValue is scalarText for an environment value. The error names the
// field (the variable) and the type found, never the value: env holds
// secrets, and the error goes to the daemon's log.
func (d *decoder) envValue(field string, v any) (string, bool) {
	s, ok := scalarText(v)
	if !ok {
		d.errorf(field, "expected a string, got %s (quote the value)", kindOf(v))
	}
	return s, ok
}

// integer accepts any integral number the three parsers produce.
func (d *decoder) integer(field string, v any, lo, hi int) (int, bool) {
	var n int64
	switch v := v.(type) {
	case int:
		n = int64(v)
	case int64:
		n = v
	case uint64:
		if v > math.MaxInt32 {
			n = math.MaxInt32 + 1
		} else {
			n = int64(v)
		}
	case float64:
		if v != math.Trunc(v) || math.IsInf(v, 0) || math.IsNaN(v) {
			d.errorf(field, "expected an integer from %d to %d, got %s", lo, hi, Describe(v))
			return 0, false
		}
		n = int64(max(min(v, math.MaxInt32+1), math.MinInt32-1))
	default:
		d.errorf(field, "expected an integer from %d to %d, got %s", lo, hi, Describe(v))
		return 0, false
	}
	if n < int64(lo) || n > int64(hi) {
		d.errorf(field, "expected an integer from %d to %d, got %d", lo, hi, n)
		return 0, false
	}
	return int(n), true
}

func (d *decoder) boolean(field string, v any) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		d.errorf(field, "expected true or false, got %s", Describe(v))
	}
	return b, ok
}

// duration parses a Go duration string. When zeroOK is false the duration
// must be positive.
func (d *decoder) duration(field string, v any, zeroOK bool) (time.Duration, bool) {
	const expected = "a duration such as 90s or 10m"
	s, ok := v.(string)
	if !ok {
		// A bare 0 is unambiguous where zero is allowed.
		if zeroOK && (v == 0 || v == int64(0) || v == float64(0) || v == uint64(0)) {
			return 0, true
		}
		d.errorf(field, "expected %s, got %s", expected, Describe(v))
		return 0, false
	}
	dur, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		d.errorf(field, "expected %s, got %s", expected, Describe(v))
		return 0, false
	}
	switch {
	case dur < 0:
		d.errorf(field, "expected a duration of 0 or more, got %s", Describe(v))
		return 0, false
	case dur == 0 && !zeroOK:
		d.errorf(field, "expected a duration greater than 0, got %s", Describe(v))
		return 0, false
	}
	return dur, true
}

// stringList accepts one string or a list of strings; check validates each.
func (d *decoder) stringList(field string, v any, expected string, check func(field, s string) bool) ([]string, bool) {
	var items []any
	switch v := v.(type) {
	case string:
		if check(field, v) {
			return []string{v}, true
		}
		return nil, false
	case []any:
		items = v
	default:
		d.errorf(field, "expected %s or a list of them, got %s", expected, Describe(v))
		return nil, false
	}
	if len(items) == 0 {
		d.errorf(field, "expected at least one %s, got an empty list", expected)
		return nil, false
	}
	out := make([]string, 0, len(items))
	seen := make(map[string]int, len(items)) // item to its first index
	ok := true
	for i, it := range items {
		f := index(field, i)
		s, isStr := it.(string)
		if !isStr {
			d.errorf(f, "expected %s, got %s", expected, Describe(it))
			ok = false
			continue
		}
		if !check(f, s) {
			ok = false
			continue
		}
		if j, dup := seen[s]; dup {
			d.errorf(f, "%s is listed twice (also %s)", Quote(s), index(field, j))
			ok = false
			continue
		}
		seen[s] = i
		out = append(out, s)
	}
	return out, ok
}

// argv accepts a list of words or a string run by /bin/sh -c.
func (d *decoder) argv(field string, v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			d.errorf(field, "expected a command, got an empty string")
			return nil, false
		}
		return []string{"/bin/sh", "-c", v}, true
	case []any:
		if len(v) == 0 {
			d.errorf(field, "expected a command (a list of words or a string), got an empty list")
			return nil, false
		}
		out := make([]string, 0, len(v))
		ok := true
		for i, w := range v {
			s, good := d.scalar(index(field, i), w)
			ok = ok && good
			out = append(out, s)
		}
		if ok && out[0] == "" {
			d.errorf(index(field, 0), "expected the program to run, got an empty string")
			ok = false
		}
		return out, ok
	}
	d.errorf(field, "expected a command (a list of words or a string), got %s", Describe(v))
	return nil, false
}
