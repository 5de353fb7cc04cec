package settings

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefault(t *testing.T) {
	s := Default()
	want := Settings{AppsDir: "./apps.d", StateDir: "./.dynapm", Log: Log{"text", "info"}, Memory: Memory{Interval: time.Second},
		AppLogs: AppLogs{MaxSize: 10 << 20, Keep: 3}}
	if s != want {
		t.Errorf("Default() = %+v, want %+v", s, want)
	}
	if got, err := Load(""); err != nil || got != want {
		t.Errorf(`Load("") = %+v, %v`, got, err)
	}
}

func TestLoadAllKeys(t *testing.T) {
	files := map[string]string{
		"dynapm.yaml": `
apps_dir: ./apps
state_dir: /var/lib/dynapm
metrics: 127.0.0.1:9464
log: {format: json, level: debug}
memory: {min_available: 512MiB, budget: 4GiB, interval: 250ms}
app_logs: {max_size: 50MiB, keep: 0, compress: true}
event_loops: 3
`,
		"dynapm.toml": `
apps_dir = "./apps"
state_dir = "/var/lib/dynapm"
metrics = "127.0.0.1:9464"
event_loops = 3
[log]
format = "json"
level = "debug"
[memory]
min_available = "512MiB"
budget = "4GiB"
interval = "250ms"
[app_logs]
max_size = "50MiB"
keep = 0
compress = true
`,
		"dynapm.json": `{"apps_dir": "./apps", "state_dir": "/var/lib/dynapm", "metrics": "127.0.0.1:9464",
"log": {"format": "json", "level": "debug"},
"memory": {"min_available": "512MiB", "budget": "4GiB", "interval": "250ms"},
"app_logs": {"max_size": "50MiB", "keep": 0, "compress": true}, "event_loops": 3}`,
	}
	for name, content := range files {
		p := write(t, name, content)
		s, err := Load(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := Settings{
			AppsDir:    filepath.Join(filepath.Dir(p), "apps"),
			StateDir:   "/var/lib/dynapm",
			Metrics:    "127.0.0.1:9464",
			Log:        Log{"json", "debug"},
			Memory:     Memory{MinAvailableBytes: 512 << 20, Budget: 4 << 30, Interval: 250 * time.Millisecond},
			AppLogs:    AppLogs{MaxSize: 50 << 20, Keep: 0, Compress: true},
			EventLoops: 3,
			File:       p,
		}
		if s != want {
			t.Errorf("%s: got %+v, want %+v", name, s, want)
		}
		if s.Log.SlogLevel() != slog.LevelDebug {
			t.Errorf("SlogLevel = %v", s.Log.SlogLevel())
		}
	}
}

func TestLoadPartialKeepsDefaults(t *testing.T) {
	p := write(t, "d.yaml", "memory: {min_available: '10%', budget: 0}\nmetrics: ''\n")
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.AppsDir != "./apps.d" || s.StateDir != "./.dynapm" || s.Log != (Log{"text", "info"}) || s.Metrics != "" {
		t.Errorf("defaults lost: %+v", s)
	}
	if s.Memory != (Memory{MinAvailablePercent: 10, Interval: time.Second}) {
		t.Errorf("Memory = %+v", s.Memory)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ content, field, want string }{
		{"apps_dri: x\n", "apps_dri", "unknown key"},
		{"log: {format: xml}\n", "log.format", `expected one of text, json, got "xml"`},
		{"log: {level: verbose}\n", "log.level", `got "verbose"`},
		{"log: {colour: red}\n", "log.colour", "unknown key"},
		{"log: text\n", "log", "expected a mapping"},
		{"memory: {min_available: '150%'}\n", "memory.min_available", "percentage"},
		{"memory: {min_available: lots}\n", "memory.min_available", "expected a size"},
		{"memory: {budget: -1}\n", "memory.budget", "got -1"},
		{"memory: {budget: 4XB}\n", "memory.budget", `got "4XB"`},
		{"memory: {interval: 0s}\n", "memory.interval", "greater than 0"},
		{"memory: {interval: 1}\n", "memory.interval", "got 1"},
		{"memory: {limit: 1}\n", "memory.limit", "unknown key"},
		{"metrics: 9464\n", "metrics", "got 9464"},
		{"metrics: localhost\n", "metrics", `got "localhost"`},
		{"apps_dir: ''\n", "apps_dir", "empty string"},
		{"state_dir: [a]\n", "state_dir", "got a list"},
		{"apps_dir: [\n", "", "invalid YAML"},
		{"app_logs: {max_size: 0}\n", "app_logs.max_size", "above 0"},
		{"app_logs: {max_size: big}\n", "app_logs.max_size", `got "big"`},
		{"app_logs: {keep: -1}\n", "app_logs.keep", "got -1"},
		{"app_logs: {keep: two}\n", "app_logs.keep", `got "two"`},
		{"app_logs: {compress: yes please}\n", "app_logs.compress", "expected true or false"},
		{"app_logs: {rotate: daily}\n", "app_logs.rotate", "unknown key"},
		{"event_loops: -1\n", "event_loops", "got -1"},
		{"event_loops: 33\n", "event_loops", "expected at most 32 (0 for one per CPU), got 33"},
		{"event_loops: two\n", "event_loops", `got "two"`},
	}
	for _, c := range cases {
		p := write(t, "dynapm.yaml", c.content)
		_, err := Load(p)
		if err == nil {
			t.Errorf("%q: no error", c.content)
			continue
		}
		found := false
		for _, e := range strings.Split(err.Error(), "\n") {
			prefix := p + ": "
			if c.field != "" {
				prefix += c.field + ": "
			}
			if strings.HasPrefix(e, prefix) && strings.Contains(e, c.want) {
				found = true
			}
		}
		var fe *appfile.FieldError
		if !found || !errors.As(err, &fe) {
			t.Errorf("%q: error %q lacks %s: ...%s", c.content, err, c.field, c.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "none.yaml")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("err = %v", err)
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "4GiB": 4 << 30, "4gib": 4 << 30,
		"1KiB": 1024, "1KB": 1000, "1MB": 1e6, "1GB": 1e9, "1TiB": 1 << 40, "1.5GiB": 3 << 29,
		"300 KB": 300000, " 2M ": 2 << 20, "7B": 7, "1G": 1 << 30,
	}
	for in, want := range good {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1..5GB", "1e9", "1 XB", "10%", "99999999999TiB"} {
		if got, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestSlogLevel(t *testing.T) {
	for lvl, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got := (Log{Level: lvl}).SlogLevel(); got != want {
			t.Errorf("%s: %v", lvl, got)
		}
	}
}

// TestLoadReadmeExample reads the settings file of README.md's "Daemon
// settings" section, so that the documentation cannot drift from the
// parser.
func TestLoadReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Daemon settings (optional)\n")
	if !ok {
		t.Fatal("README.md has no \"Daemon settings (optional)\" section")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("README.md's settings section has no YAML example")
	}
	block, _, _ = strings.Cut(block, "```")
	p := write(t, "dynapm.yaml", block)
	s, err := Load(p)
	if err != nil {
		t.Fatalf("README example does not parse: %v\n%s", err, block)
	}
	dir := filepath.Dir(p)
	want := Settings{
		AppsDir: filepath.Join(dir, "apps.d"), StateDir: filepath.Join(dir, ".dynapm"),
		Metrics: "127.0.0.1:9464", Log: Log{"text", "info"},
		Memory:      Memory{MinAvailablePercent: 10, Budget: 4 << 30, Interval: time.Second},
		AppLogs:     AppLogs{MaxSize: 10 << 20, Keep: 3},
		Containment: ContainAuto,
		File:        p,
	}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
}

// TestErrorsQuoteLittleOfAFileThatIsNotASettingsFile: a settings file that
// is /etc/shadow parses as YAML keys, one per line; the error names a few,
// each cut short, rather than copying the file into the log.
func TestErrorsQuoteLittleOfAFileThatIsNotASettingsFile(t *testing.T) {
	var lines []string
	for i := range 40 {
		hash := strings.Repeat(string(rune('A'+i%26))+string(rune('a'+i%26))+"0/", 22)
		lines = append(lines, "user"+strconv.Itoa(i)+":$6$"+hash+":19700:0:99999:7:::")
	}
	_, err := Load(write(t, "dynapm.yaml", strings.Join(lines, "\n")+"\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	shown := 0
	for i, line := range lines {
		// The user name is the line's start: the line is quoted if
		// "userN:$6$" is in the error, and then at most MaxQuoted bytes.
		if strings.Contains(err.Error(), line[:appfile.MaxQuoted+1]) {
			t.Errorf("line %d: more than %d bytes of it in the error", i+1, appfile.MaxQuoted)
		}
		if strings.Contains(err.Error(), strings.SplitN(line, "$", 2)[0]+"$6$") {
			shown++
		}
	}
	if shown > 3 {
		t.Errorf("the error quotes %d lines of the file, want at most 3:\n%v", shown, err)
	}
}

// TestNestedSettingsFileIsRefused: the settings file is read by the same
// bounded reader as app files, so deep nesting is refused on its line
// before a parser builds it.
func TestNestedSettingsFileIsRefused(t *testing.T) {
	n := 20_000
	p := write(t, "dynapm.toml", "a = "+strings.Repeat("{a = ", n)+"1"+strings.Repeat("}", n)+"\n")
	_, err := Load(p)
	if err == nil || err.Error() != p+": line 1: nesting deeper than 16 levels" {
		t.Errorf("error %v, want %s: line 1: nesting deeper than 16 levels", err, p)
	}
}
