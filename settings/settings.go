// Package settings reads the daemon's own optional settings file
// (-config FILE): where apps.d and the state directory are, metrics, logging
// and memory limits. App files are the appfile package's business.
package settings

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/l4"
)

// Settings is the daemon's configuration. Flags given on the command line
// override it.
type Settings struct {
	// AppsDir is the directory of app files.
	AppsDir string
	// StateDir holds logs/NAME.log and the admin socket dynapm.sock.
	StateDir string
	// Metrics is the TCP address of the Prometheus endpoint; "" is off.
	Metrics string
	Log     Log
	Memory  Memory
	AppLogs AppLogs
	// EventLoops is how many event loops (threads) carry the spliced
	// connections, at most l4.MaxEventLoops; 0 leaves the choice to the
	// daemon (one per CPU).
	EventLoops int
	// Containment is how the exec driver holds an app's processes:
	// ContainAuto (cgroup where usable, else process-group), ContainCgroup
	// (refuse to start without) or ContainProcessGroup.
	Containment string
	// AccessLog: log a line per connection (app, client, bytes each way,
	// duration, how it ended) for every app whose file does not say
	// otherwise (its access_log).
	AccessLog bool
	// File is the settings file these were read from, "" for none: errors
	// about a setting name it.
	File string
}

// AppLogs configures the rotation of the apps' logs, STATE/logs/NAME.log.
type AppLogs struct {
	// MaxSize is the size in bytes past which a log is rotated (counted
	// in whole MiB, rounded up).
	MaxSize int64
	// Keep is how many rotated files are kept per app (0: none).
	Keep int
	// Compress gzips the rotated files.
	Compress bool
}

// Log configures the daemon's own log.
type Log struct {
	// Format is "text" or "json".
	Format string
	// Level is "debug", "info", "warn" or "error".
	Level string
}

// Memory configures stops under memory pressure. Zero values mean "off".
type Memory struct {
	// MinAvailableBytes is a floor on the system's MemAvailable.
	MinAvailableBytes int64
	// MinAvailablePercent is a floor on MemAvailable as a percentage of
	// MemTotal (0 < p < 100). At most one of the two floors is set.
	MinAvailablePercent float64
	// Budget caps the sum of the managed apps' RSS in bytes.
	Budget int64
	// Interval is how often memory is sampled.
	Interval time.Duration
}

// Default returns the settings in force with no settings file.
func Default() Settings {
	return Settings{
		AppsDir:  "./apps.d",
		StateDir: "./.dynapm",
		Log:      Log{Format: "text", Level: "info"},
		Memory:   Memory{Interval: time.Second},
		AppLogs:  AppLogs{MaxSize: 10 << 20, Keep: 3},
	}
}

// SlogLevel returns Level as a slog.Level (info for anything unknown, which
// Load never lets through).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

var (
	topKeys     = []string{"apps_dir", "state_dir", "metrics", "log", "memory", "app_logs", "event_loops", "containment", "access_log"}
	appLogsKeys = []string{"max_size", "keep", "compress"}
	logKeys     = []string{"format", "level"}
	memoryKeys  = []string{"min_available", "budget", "interval"}
)

// Load reads the settings file at path (YAML, TOML or JSON by extension)
// over Default. Relative apps_dir and state_dir given in the file are
// relative to the file's directory, so that the file means the same thing
// from any working directory; defaults it leaves alone stay relative to the
// working directory, as with no file. An empty path returns Default. The
// error joins one *appfile.FieldError per problem.
func Load(path string) (Settings, error) {
	s := Default()
	if path == "" {
		return s, nil
	}
	data, err := appfile.ReadFile(path)
	if err != nil {
		return s, &appfile.FieldError{File: path, Msg: fmt.Sprintf("reading settings file: %v", err)}
	}
	raw, err := appfile.ReadMap(path, data)
	if err != nil {
		return s, err
	}
	s.File = path
	d := &decoder{file: path}
	d.keys("", raw, topKeys)
	base := filepath.Dir(path)
	if v, ok := raw["apps_dir"]; ok {
		s.AppsDir = d.dir("apps_dir", v, base)
	}
	if v, ok := raw["state_dir"]; ok {
		s.StateDir = d.dir("state_dir", v, base)
	}
	if v, ok := raw["metrics"]; ok {
		s.Metrics = d.metrics("metrics", v)
	}
	if v, ok := raw["log"]; ok {
		if m := d.keys("log", v, logKeys); m != nil {
			if f, ok := m["format"]; ok {
				s.Log.Format = d.oneOf("log.format", f, "text", "json")
			}
			if l, ok := m["level"]; ok {
				s.Log.Level = d.oneOf("log.level", l, "debug", "info", "warn", "error")
			}
		}
	}
	if v, ok := raw["memory"]; ok {
		if m := d.keys("memory", v, memoryKeys); m != nil {
			if x, ok := m["min_available"]; ok {
				s.Memory.MinAvailableBytes, s.Memory.MinAvailablePercent = d.minAvailable("memory.min_available", x)
			}
			if x, ok := m["budget"]; ok {
				s.Memory.Budget = d.size("memory.budget", x)
			}
			if x, ok := m["interval"]; ok {
				s.Memory.Interval = d.interval("memory.interval", x, s.Memory.Interval)
			}
		}
	}
	if v, ok := raw["app_logs"]; ok {
		if m := d.keys("app_logs", v, appLogsKeys); m != nil {
			if x, ok := m["max_size"]; ok {
				before := len(d.errs)
				if n := d.size("app_logs.max_size", x); n > 0 {
					s.AppLogs.MaxSize = n
				} else if len(d.errs) == before {
					d.errorf("app_logs.max_size", "expected a size above 0 such as 10MiB, got %s", appfile.Describe(x))
				}
			}
			if x, ok := m["keep"]; ok {
				s.AppLogs.Keep = d.count("app_logs.keep", x)
			}
			if x, ok := m["compress"]; ok {
				s.AppLogs.Compress = d.boolean("app_logs.compress", x)
			}
		}
	}
	if v, ok := raw["access_log"]; ok {
		s.AccessLog = d.boolean("access_log", v)
	}
	if v, ok := raw["event_loops"]; ok {
		before := len(d.errs)
		if n := d.count("event_loops", v); n <= l4.MaxEventLoops {
			s.EventLoops = n
		} else if len(d.errs) == before {
			d.errorf("event_loops", "expected at most %d (0 for one per CPU), got %d", l4.MaxEventLoops, n)
		}
	}
	if v, ok := raw["containment"]; ok {
		s.Containment = d.oneOf("containment", v, ContainAuto, ContainCgroup, ContainProcessGroup)
	}
	if len(d.errs) > 0 {
		return s, errors.Join(d.errs...)
	}
	return s, nil
}

// The values of the containment setting.
const (
	ContainAuto         = "auto"
	ContainCgroup       = "cgroup"
	ContainProcessGroup = "process-group"
)

// decoder collects every problem in the settings file.
type decoder struct {
	file string
	errs []error
}

func (d *decoder) errorf(field, format string, args ...any) {
	d.errs = append(d.errs, &appfile.FieldError{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// keys checks that v is a mapping with only known keys.
func (d *decoder) keys(field string, v any, known []string) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		d.errorf(field, "expected a mapping with keys %s, got %s", strings.Join(known, ", "), appfile.Describe(v))
		return nil
	}
	d.errs = append(d.errs, appfile.UnknownKeys(d.file, field, m, known)...)
	return m
}

func (d *decoder) str(field string, v any, expected string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.errorf(field, "expected %s, got %s", expected, appfile.Describe(v))
	}
	return s, ok
}

func (d *decoder) dir(field string, v any, base string) string {
	s, ok := d.str(field, v, "a directory path")
	if !ok {
		return ""
	}
	if s == "" {
		d.errorf(field, "expected a directory path, got an empty string")
		return ""
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(base, s)
	}
	return filepath.Clean(s)
}

func (d *decoder) metrics(field string, v any) string {
	s, ok := d.str(field, v, `a host:port such as 127.0.0.1:9464, or "" for off`)
	if !ok || s == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(s)
	if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n == 0 {
		d.errorf(field, `expected a host:port such as 127.0.0.1:9464, or "" for off, got %s`, appfile.Quote(s))
		return ""
	}
	return s
}

func (d *decoder) oneOf(field string, v any, allowed ...string) string {
	expected := "one of " + strings.Join(allowed, ", ")
	s, ok := d.str(field, v, expected)
	if ok && !slices.Contains(allowed, s) {
		d.errorf(field, "expected %s, got %s", expected, appfile.Quote(s))
		return ""
	}
	return s
}

// size accepts a byte count as a number or a string with a unit; null is 0.
func (d *decoder) size(field string, v any) int64 {
	if v == nil {
		return 0
	}
	n, err := appfile.ParseBytesValue(v)
	if err != nil {
		d.errorf(field, "%v", err)
	}
	return n
}

// minAvailable accepts "10%" or a size.
func (d *decoder) minAvailable(field string, v any) (int64, float64) {
	if s, ok := v.(string); ok {
		if num, isPct := strings.CutSuffix(strings.TrimSpace(s), "%"); isPct {
			p, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || !(p > 0 && p < 100) {
				d.errorf(field, "expected a percentage above 0%% and below 100%%, got %s", appfile.Quote(s))
				return 0, 0
			}
			return 0, p
		}
	}
	return d.size(field, v), 0
}

func (d *decoder) interval(field string, v any, def time.Duration) time.Duration {
	s, ok := d.str(field, v, "a duration such as 1s or 500ms")
	if !ok {
		return def
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur <= 0 {
		d.errorf(field, "expected a duration greater than 0 such as 1s or 500ms, got %s", appfile.Quote(s))
		return def
	}
	return dur
}

// count accepts a whole number ≥ 0.
func (d *decoder) count(field string, v any) int {
	switch v := v.(type) {
	case int:
		if v >= 0 {
			return v
		}
	case int64:
		if v >= 0 && v <= math.MaxInt32 {
			return int(v)
		}
	case uint64:
		if v <= math.MaxInt32 {
			return int(v)
		}
	case float64:
		if v >= 0 && v == math.Trunc(v) && v <= math.MaxInt32 {
			return int(v)
		}
	}
	d.errorf(field, "expected a whole number ≥ 0, got %s", appfile.Describe(v))
	return 0
}

// boolean accepts true or false.
func (d *decoder) boolean(field string, v any) bool {
	b, ok := v.(bool)
	if !ok {
		d.errorf(field, "expected true or false, got %s", appfile.Describe(v))
	}
	return b
}
