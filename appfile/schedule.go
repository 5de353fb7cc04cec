package appfile

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

var (
	wakeKeys = []string{"cron", "keep"}
	jobKeys  = []string{"cron", "command", "timeout", "needs_app"}
)

// CutZone splits the CRON_TZ=Zone (or TZ=Zone) prefix off a schedule the
// way robfig/cron reads it: the zone runs from the "=" to the first space.
// ok is false when spec has no such prefix; zone or rest may be empty when
// it is malformed.
func CutZone(spec string) (zone, rest string, ok bool) {
	if !strings.HasPrefix(spec, "TZ=") && !strings.HasPrefix(spec, "CRON_TZ=") {
		return "", spec, false
	}
	_, after, _ := strings.Cut(spec, "=")
	zone, rest, _ = strings.Cut(after, " ")
	return zone, strings.TrimSpace(rest), true
}

// zoneError is a CRON_TZ= prefix naming no zone of the tz database.
type zoneError struct{ zone string }

func (e *zoneError) Error() string {
	return fmt.Sprintf("unknown time zone %s (expected CRON_TZ=Area/City from the tz database)", Quote(e.zone))
}

// maxZones bounds the time zones one file may name: loading a zone reads
// the tz database, and trying a name it lacks reads the whole directory of
// Go's copy of it each time.
const maxZones = 8

// zoneKnown reports whether the tz database has zone, asking it once per
// zone per file.
func (d *decoder) zoneKnown(zone string) (bool, error) {
	if known, ok := d.zones[zone]; ok {
		return known, nil
	}
	if len(d.zones) == maxZones {
		return false, fmt.Errorf("more than %d time zones in one file", maxZones)
	}
	_, err := time.LoadLocation(zone)
	if d.zones == nil {
		d.zones = map[string]bool{}
	}
	d.zones[zone] = err == nil
	return err == nil, nil
}

// checkCron validates a schedule the way the scheduler will read it: five
// fields, or a descriptor such as @daily or @every 1h, optionally prefixed
// by CRON_TZ=Zone. A zone zoneKnown does not know is a *zoneError.
func checkCron(spec string, zoneKnown func(string) (bool, error)) (err error) {
	// cron v3.0.1 slices out of range on "CRON_TZ=X" with nothing after it;
	// a bad file must never take the daemon down.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed time zone prefix")
		}
	}()
	zone, rest, hasZone := CutZone(spec)
	if hasZone {
		if zone == "" || rest == "" {
			return fmt.Errorf("malformed time zone prefix")
		}
		// The cron parser reads one prefix; rest is parsed on its own below.
		if _, _, again := CutZone(rest); again {
			return fmt.Errorf("a second time zone prefix")
		}
		// Checked here, not left to the parser, to say what a zone is.
		known, err := zoneKnown(zone)
		if err != nil {
			return err
		}
		if !known {
			return &zoneError{zone: zone}
		}
	}
	// Without the prefix: the zone is checked, and the parser would load
	// it again.
	if _, err := cron.ParseStandard(rest); err != nil {
		return err
	}
	// @every 0s or a negative interval parses, then silently becomes 1s.
	if after, ok := strings.CutPrefix(rest, "@every "); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(after)); err == nil && d < time.Second {
			return fmt.Errorf("@every needs an interval of at least 1s")
		}
	}
	return nil
}

func (d *decoder) cronSpec(field string, v any) (string, bool) {
	s, ok := d.str(field, v, `a cron schedule such as "0 9 * * 1-5" or "@daily"`)
	if !ok {
		return "", false
	}
	if err := checkCron(s, d.zoneKnown); err != nil {
		if ze := (*zoneError)(nil); errors.As(err, &ze) {
			d.errorf(field, "%v in %s", ze, Quote(s))
			return "", false
		}
		d.errorf(field, `expected a cron schedule (5 fields, or @daily, @every 1h...; CRON_TZ= prefix allowed), got %s: %s`, Quote(s), libraryMessage(err.Error()))
		return "", false
	}
	return s, true
}

// list checks that v is a list of mappings and calls each for every entry.
func (d *decoder) list(field string, v any, what string, each func(field string, m map[string]any)) {
	items, ok := v.([]any)
	if !ok {
		d.errorf(field, "expected a list of %s, got %s", what, Describe(v))
		return
	}
	for i, it := range items {
		f := index(field, i)
		if _, isMap := it.(map[string]any); !isMap {
			d.errorf(f, "expected a mapping (%s), got %s", what, Describe(it))
			continue
		}
		each(f, it.(map[string]any))
	}
}

func (d *decoder) wake(field string, v any) []Wake {
	var out []Wake
	d.list(field, v, "{cron, keep}", func(f string, raw map[string]any) {
		m, _ := d.mapping(f, raw, wakeKeys)
		var w Wake
		ok := true
		if c, present := m["cron"]; present {
			w.Cron, ok = d.cronSpec(join(f, "cron"), c)
		} else {
			d.errorf(join(f, "cron"), "required key is missing")
			ok = false
		}
		if k, present := m["keep"]; present && k != nil {
			var good bool
			w.Keep, good = d.duration(join(f, "keep"), k, true)
			ok = ok && good
		}
		if ok {
			out = append(out, w)
		}
	})
	return out
}

func (d *decoder) jobs(field string, v any) []Job {
	var out []Job
	d.list(field, v, "{cron, command, timeout, needs_app}", func(f string, raw map[string]any) {
		m, _ := d.mapping(f, raw, jobKeys)
		var j Job
		ok := true
		for _, req := range []string{"cron", "command"} {
			if _, present := m[req]; !present {
				d.errorf(join(f, req), "required key is missing")
				ok = false
			}
		}
		if c, present := m["cron"]; present {
			var good bool
			j.Cron, good = d.cronSpec(join(f, "cron"), c)
			ok = ok && good
		}
		if c, present := m["command"]; present {
			var good bool
			j.Command, good = d.argv(join(f, "command"), c)
			ok = ok && good
		}
		if t, present := m["timeout"]; present && t != nil {
			var good bool
			j.Timeout, good = d.duration(join(f, "timeout"), t, true)
			ok = ok && good
		}
		if n, present := m["needs_app"]; present && n != nil {
			var good bool
			j.NeedsApp, good = d.boolean(join(f, "needs_app"), n)
			ok = ok && good
		}
		if ok {
			out = append(out, j)
		}
	})
	return out
}
