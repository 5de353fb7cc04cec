package appfile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const minimal = "listen: 127.0.0.1:8080\ncommand: [./server]\n"

func TestParseDefaults(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "web.yaml", minimal)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(p)
	checks := []struct {
		name      string
		got, want any
	}{
		{"Name", s.Name, "web"},
		{"File", s.File, abs},
		{"Dir", s.Dir, filepath.Dir(abs)},
		{"Mode", s.Mode, OnDemand},
		{"IdleTimeout", s.IdleTimeout, DefaultIdleTimeout},
		{"StartTimeout", s.StartTimeout, DefaultStartTimeout},
		{"StopTimeout", s.StopTimeout, DefaultStopTimeout},
		{"StopSignal", s.StopSignal, syscall.SIGTERM},
		{"MaxPending", s.MaxPending, DefaultMaxPending},
		{"MemoryPriority", s.MemoryPriority, 0},
		{"MemoryMax", s.MemoryMax, int64(0)},
		{"Upstream", s.Upstream, ""},
		{"Ready.HTTP", s.Ready.HTTP, ""},
		{"ProxyProtocol", s.ProxyProtocol, ""},
		{"len(Env)", len(s.Env), 0},
		{"len(Wake)", len(s.Wake), 0},
		{"len(Jobs)", len(s.Jobs), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if !slices.Equal(s.Listen, []string{"127.0.0.1:8080"}) || !slices.Equal(s.Command, []string{"./server"}) {
		t.Errorf("Listen %q Command %q", s.Listen, s.Command)
	}
	if s.Env == nil {
		t.Error("Env is nil; want an empty map so that callers can range without checks")
	}
}

// TestParseKeys covers every key with good and bad values. Each case's YAML
// is added to a minimal valid file (or replaces a key of it).
func TestParseKeys(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "sub/keep", "")
	writeFile(t, dir, "plainfile", "")
	type tc struct {
		name  string
		yaml  string // appended to minimal unless full is set
		full  bool
		check func(t *testing.T, s *Spec) // for good cases
		field string                      // for bad cases
		want  string                      // substring of the error
	}
	cases := []tc{
		// listen
		{name: "listen list", full: true, yaml: "listen: ['127.0.0.1:1', '[::1]:2', ':3']\ncommand: x\n", check: func(t *testing.T, s *Spec) {
			if !slices.Equal(s.Listen, []string{"127.0.0.1:1", "[::1]:2", ":3"}) {
				t.Errorf("Listen = %q", s.Listen)
			}
		}},
		{name: "listen localhost kept as given", full: true, yaml: "listen: localhost:80\ncommand: x\n", check: func(t *testing.T, s *Spec) {
			if s.Listen[0] != "localhost:80" {
				t.Errorf("Listen = %q", s.Listen)
			}
		}},
		{name: "listen missing", full: true, yaml: "command: x\n", field: "listen", want: "required key is missing"},
		{name: "listen number", full: true, yaml: "listen: 42\ncommand: x\n", field: "listen", want: "expected a host:port string or unix:/path or a list of them, got 42"},
		{name: "listen null", full: true, yaml: "listen:\ncommand: x\n", field: "listen", want: "got nothing (null)"},
		{name: "listen empty list", full: true, yaml: "listen: []\ncommand: x\n", field: "listen", want: "empty list"},
		{name: "listen no port", full: true, yaml: "listen: 127.0.0.1\ncommand: x\n", field: "listen", want: "expected host:port"},
		{name: "listen port zero", full: true, yaml: "listen: ':0'\ncommand: x\n", field: "listen", want: "port number from 1 to 65535"},
		{name: "listen port too big", full: true, yaml: "listen: ':65536'\ncommand: x\n", field: "listen", want: "port number from 1 to 65535"},
		{name: "listen port name", full: true, yaml: "listen: ':http'\ncommand: x\n", field: "listen", want: "port number"},
		{name: "listen dns name", full: true, yaml: "listen: example.com:80\ncommand: x\n", field: "listen", want: "expected an IP address, localhost or nothing"},
		{name: "listen ipv6 without brackets", full: true, yaml: "listen: '::1:80'\ncommand: x\n", field: "listen", want: "expected host:port"},
		{name: "listen bad element", full: true, yaml: "listen: ['127.0.0.1:1', 7]\ncommand: x\n", field: "listen[1]", want: "got 7"},
		{name: "listen duplicate", full: true, yaml: "listen: ['127.0.0.1:1', 'localhost:1']\ncommand: x\n", field: "listen[1]", want: "overlaps"},
		{name: "listen wildcard overlaps", full: true, yaml: "listen: ['127.0.0.1:1', '0.0.0.0:1']\ncommand: x\n", field: "listen[1]", want: "overlaps"},
		// upstream
		{name: "upstream localhost resolved", yaml: "upstream: localhost:18080\n", check: func(t *testing.T, s *Spec) {
			if s.Upstream != "127.0.0.1:18080" {
				t.Errorf("Upstream = %q", s.Upstream)
			}
		}},
		{name: "upstream ipv6", yaml: "upstream: '[::1]:18080'\n", check: func(t *testing.T, s *Spec) {
			if s.Upstream != "[::1]:18080" {
				t.Errorf("Upstream = %q", s.Upstream)
			}
		}},
		{name: "upstream dns", yaml: "upstream: db.internal:5432\n", field: "upstream", want: "expected an IP address"},
		{name: "upstream wildcard", yaml: "upstream: ':5432'\n", field: "upstream", want: "expected an address to connect to"},
		{name: "upstream number", yaml: "upstream: 5432\n", field: "upstream", want: "got 5432"},
		{name: "upstream is own listen", yaml: "upstream: 127.0.0.1:8080\n", field: "upstream", want: "proxy the app to itself"},
		// command
		{name: "command string", full: true, yaml: "listen: ':1'\ncommand: echo hi && sleep 1\n", check: func(t *testing.T, s *Spec) {
			if !slices.Equal(s.Command, []string{"/bin/sh", "-c", "echo hi && sleep 1"}) {
				t.Errorf("Command = %q", s.Command)
			}
		}},
		{name: "command numbers as words", full: true, yaml: "listen: ':1'\ncommand: [sleep, 10]\n", check: func(t *testing.T, s *Spec) {
			if !slices.Equal(s.Command, []string{"sleep", "10"}) {
				t.Errorf("Command = %q", s.Command)
			}
		}},
		{name: "command missing", full: true, yaml: "listen: ':1'\n", field: "command", want: "required key is missing"},
		{name: "command empty string", full: true, yaml: "listen: ':1'\ncommand: ''\n", field: "command", want: "empty string"},
		{name: "command empty list", full: true, yaml: "listen: ':1'\ncommand: []\n", field: "command", want: "empty list"},
		{name: "command mapping", full: true, yaml: "listen: ':1'\ncommand: {a: b}\n", field: "command", want: "got a mapping"},
		{name: "command float word", full: true, yaml: "listen: ':1'\ncommand: [x, 1.5]\n", field: "command[1]", want: "quote it"},
		{name: "command empty program", full: true, yaml: "listen: ':1'\ncommand: ['', a]\n", field: "command[0]", want: "program to run"},
		// dir
		{name: "dir relative", yaml: "dir: sub/keep/..\n", check: func(t *testing.T, s *Spec) {
			if s.Dir != filepath.Join(dir, "sub") {
				t.Errorf("Dir = %q, want %q", s.Dir, filepath.Join(dir, "sub"))
			}
		}},
		{name: "dir absolute", yaml: "dir: /tmp\n", check: func(t *testing.T, s *Spec) {
			if s.Dir != "/tmp" {
				t.Errorf("Dir = %q", s.Dir)
			}
		}},
		{name: "dir missing", yaml: "dir: nowhere\n", field: "dir", want: "expected an existing directory"},
		{name: "dir is a file", yaml: "dir: plainfile\n", field: "dir", want: "not a directory"},
		{name: "dir empty", yaml: "dir: ''\n", field: "dir", want: "empty string"},
		// env
		{name: "env", yaml: "env: {GREETING: hello, N: 1, ON: true, P: '${PORT}'}\n", check: func(t *testing.T, s *Spec) {
			want := map[string]string{"GREETING": "hello", "N": "1", "ON": "true", "P": "${PORT}"}
			for k, v := range want {
				if s.Env[k] != v {
					t.Errorf("Env[%s] = %q, want %q", k, s.Env[k], v)
				}
			}
		}},
		{name: "env bad name", yaml: "env: {1X: a}\n", field: "env.1X", want: "environment variable name"},
		{name: "env list", yaml: "env: [A=b]\n", field: "env", want: "expected a mapping of NAME: value, got a list"},
		{name: "env nested value", yaml: "env: {A: {b: c}}\n", field: "env.A", want: "expected a string, got a mapping"},
		// mode
		{name: "mode persistent", yaml: "mode: persistent\n", check: func(t *testing.T, s *Spec) {
			if s.Mode != Persistent {
				t.Errorf("Mode = %q", s.Mode)
			}
		}},
		{name: "mode always", yaml: "mode: always\n", check: func(t *testing.T, s *Spec) {
			if s.Mode != Always {
				t.Errorf("Mode = %q", s.Mode)
			}
		}},
		{name: "mode typo", yaml: "mode: ondemand\n", field: "mode", want: `expected one of on-demand, persistent, always, got "ondemand"`},
		// timeouts
		{name: "timeouts", yaml: "idle_timeout: 90s\nstart_timeout: 1m\nstop_timeout: 1500ms\n", check: func(t *testing.T, s *Spec) {
			if s.IdleTimeout != 90*time.Second || s.StartTimeout != time.Minute || s.StopTimeout != 1500*time.Millisecond {
				t.Errorf("timeouts %v %v %v", s.IdleTimeout, s.StartTimeout, s.StopTimeout)
			}
		}},
		{name: "idle_timeout number", yaml: "idle_timeout: 90\n", field: "idle_timeout", want: "expected a duration such as 90s or 10m, got 90"},
		{name: "idle_timeout zero", yaml: "idle_timeout: 0s\n", field: "idle_timeout", want: "greater than 0"},
		{name: "start_timeout negative", yaml: "start_timeout: -1s\n", field: "start_timeout", want: "0 or more"},
		{name: "stop_timeout garbage", yaml: "stop_timeout: soon\n", field: "stop_timeout", want: `got "soon"`},
		// stop_signal
		{name: "stop_signal short lowercase", yaml: "stop_signal: quit\n", check: func(t *testing.T, s *Spec) {
			if s.StopSignal != syscall.SIGQUIT {
				t.Errorf("StopSignal = %v", s.StopSignal)
			}
		}},
		{name: "stop_signal SIGINT", yaml: "stop_signal: SIGINT\n", check: func(t *testing.T, s *Spec) {
			if s.StopSignal != syscall.SIGINT {
				t.Errorf("StopSignal = %v", s.StopSignal)
			}
		}},
		{name: "stop_signal unknown", yaml: "stop_signal: SIGFOO\n", field: "stop_signal", want: "SIGTERM"},
		{name: "stop_signal number", yaml: "stop_signal: 15\n", field: "stop_signal", want: "got 15"},
		// ready
		{name: "ready http", yaml: "ready: {http: '/healthz?full=1'}\n", check: func(t *testing.T, s *Spec) {
			if s.Ready.HTTP != "/healthz?full=1" {
				t.Errorf("Ready = %+v", s.Ready)
			}
		}},
		{name: "ready no slash", yaml: "ready: {http: healthz}\n", field: "ready.http", want: "starting with /"},
		{name: "ready space", yaml: "ready: {http: /a b}\n", field: "ready.http", want: "without spaces"},
		{name: "ready unknown key", yaml: "ready: {exec: true}\n", field: "ready.exec", want: "unknown key (known keys: http, notify, command, log, tcp)"},
		{name: "ready string", yaml: "ready: /healthz\n", field: "ready", want: "expected a mapping with keys http, notify, command, log, tcp"},
		// max_pending
		{name: "max_pending", yaml: "max_pending: 5\n", check: func(t *testing.T, s *Spec) {
			if s.MaxPending != 5 {
				t.Errorf("MaxPending = %d", s.MaxPending)
			}
		}},
		{name: "max_pending zero", yaml: "max_pending: 0\n", field: "max_pending", want: "got 0"},
		{name: "max_pending string", yaml: "max_pending: '5'\n", field: "max_pending", want: `got "5"`},
		{name: "max_pending fraction", yaml: "max_pending: 2.5\n", field: "max_pending", want: "got 2.5"},
		// memory_priority, memory_max
		{name: "memory keys", yaml: "memory_priority: -5\nmemory_max: 512MiB\n", check: func(t *testing.T, s *Spec) {
			if s.MemoryPriority != -5 || s.MemoryMax != 512<<20 {
				t.Errorf("MemoryPriority = %d, MemoryMax = %d", s.MemoryPriority, s.MemoryMax)
			}
		}},
		{name: "memory_max bytes", yaml: "memory_max: 1048576\n", check: func(t *testing.T, s *Spec) {
			if s.MemoryMax != 1<<20 {
				t.Errorf("MemoryMax = %d", s.MemoryMax)
			}
		}},
		{name: "memory_priority too high", yaml: "memory_priority: 5000\n", field: "memory_priority", want: "got 5000"},
		{name: "memory_priority string", yaml: "memory_priority: high\n", field: "memory_priority", want: `got "high"`},
		{name: "memory_max unit typo", yaml: "memory_max: 512MeB\n", field: "memory_max", want: `got "512MeB"`},
		{name: "memory_max negative", yaml: "memory_max: -1\n", field: "memory_max", want: "got -1"},
		// match
		{name: "match sni", yaml: "match: {sni: [a.example.com, '*.b.example.com']}\n", check: func(t *testing.T, s *Spec) {
			if !slices.Equal(s.Match.SNI, []string{"a.example.com", "*.b.example.com"}) || s.Match.Host != nil {
				t.Errorf("Match = %+v", s.Match)
			}
		}},
		{name: "match host string", yaml: "match: {host: a.example.com}\n", check: func(t *testing.T, s *Spec) {
			if !slices.Equal(s.Match.Host, []string{"a.example.com"}) {
				t.Errorf("Match = %+v", s.Match)
			}
		}},
		{name: "match both", yaml: "match: {sni: [a.com], host: [a.com]}\n", field: "match", want: "got both"},
		{name: "match uppercase", yaml: "match: {sni: [A.com]}\n", field: "match.sni[0]", want: "lowercase host name"},
		{name: "match bad wildcard", yaml: "match: {sni: ['a.*.com']}\n", field: "match.sni[0]", want: "lowercase host name"},
		{name: "match duplicate", yaml: "match: {host: [a.com, a.com]}\n", field: "match.host[1]", want: "listed twice"},
		{name: "match duplicate after a bad name", yaml: "match: {host: [A.com, a.com, a.com]}\n", field: "match.host[2]", want: `"a.com" is listed twice (also match.host[1])`},
		{name: "match empty", yaml: "match: {}\n", field: "match", want: "empty mapping"},
		{name: "match unknown key", yaml: "match: {path: /x}\n", field: "match.path", want: "unknown key"},
		// proxy_protocol
		{name: "proxy_protocol v2", yaml: "proxy_protocol: v2\n", check: func(t *testing.T, s *Spec) {
			if s.ProxyProtocol != "v2" {
				t.Errorf("ProxyProtocol = %q", s.ProxyProtocol)
			}
		}},
		{name: "proxy_protocol v3", yaml: "proxy_protocol: v3\n", field: "proxy_protocol", want: `expected "v1" or "v2", got "v3"`},
		{name: "proxy_protocol number", yaml: "proxy_protocol: 2\n", field: "proxy_protocol", want: "got 2"},
		// wake
		{name: "wake", yaml: "wake:\n  - {cron: '0 9 * * 1-5', keep: 2h}\n  - {cron: '@daily'}\n  - {cron: 'CRON_TZ=UTC @every 1h'}\n", check: func(t *testing.T, s *Spec) {
			want := []Wake{{"0 9 * * 1-5", 2 * time.Hour}, {"@daily", 0}, {"CRON_TZ=UTC @every 1h", 0}}
			if !slices.Equal(s.Wake, want) {
				t.Errorf("Wake = %+v", s.Wake)
			}
		}},
		{name: "wake six fields", yaml: "wake: [{cron: '0 0 9 * * 1-5'}]\n", field: "wake[0].cron", want: "expected a cron schedule"},
		{name: "wake bad field", yaml: "wake: [{cron: '61 * * * *'}]\n", field: "wake[0].cron", want: "61"},
		{name: "wake tz without schedule", yaml: "wake: [{cron: 'CRON_TZ=UTC'}]\n", field: "wake[0].cron", want: "expected a cron schedule"},
		{name: "wake unknown zone", yaml: "wake: [{cron: 'CRON_TZ=Mars/Base 0 9 * * *'}]\n", field: "wake[0].cron",
			want: `unknown time zone "Mars/Base" (expected CRON_TZ=Area/City from the tz database) in "CRON_TZ=Mars/Base 0 9 * * *"`},
		{name: "wake unknown zone old prefix", yaml: "wake: [{cron: '@daily'}, {cron: 'TZ=Europe/Atlantis @daily'}]\n", field: "wake[1].cron",
			want: `unknown time zone "Europe/Atlantis" (expected CRON_TZ=Area/City`},
		{name: "wake two zones", yaml: "wake: [{cron: 'CRON_TZ=UTC CRON_TZ=UTC @daily'}]\n", field: "wake[0].cron", want: "a second time zone prefix"},
		{name: "wake empty zone", yaml: "wake: [{cron: 'CRON_TZ= @daily'}]\n", field: "wake[0].cron", want: "malformed time zone prefix"},
		{name: "wake known zone", yaml: "wake: [{cron: 'CRON_TZ=Europe/Berlin 0 8 * * 1-5', keep: 2h}]\n", check: func(t *testing.T, s *Spec) {
			if len(s.Wake) != 1 || s.Wake[0].Cron != "CRON_TZ=Europe/Berlin 0 8 * * 1-5" {
				t.Errorf("Wake = %+v", s.Wake)
			}
		}},
		{name: "wake every 0s", yaml: "wake: [{cron: '@every 0s'}]\n", field: "wake[0].cron", want: "at least 1s"},
		{name: "wake no cron", yaml: "wake: [{keep: 1h}]\n", field: "wake[0].cron", want: "required key is missing"},
		{name: "wake bad keep", yaml: "wake: [{cron: '@daily', keep: forever}]\n", field: "wake[0].keep", want: "duration"},
		{name: "wake unknown key", yaml: "wake: [{cron: '@daily', kep: 1h}]\n", field: "wake[0].kep", want: "did you mean keep?"},
		{name: "wake not a list", yaml: "wake: {cron: '@daily'}\n", field: "wake", want: "expected a list"},
		{name: "wake entry string", yaml: "wake: ['@daily']\n", field: "wake[0]", want: "expected a mapping"},
		// jobs
		{name: "jobs", yaml: "jobs:\n  - {cron: '*/15 * * * *', command: [./cleanup.sh], timeout: 5m, needs_app: true}\n  - {cron: '@hourly', command: 'echo hi'}\n", check: func(t *testing.T, s *Spec) {
			if len(s.Jobs) != 2 {
				t.Fatalf("Jobs = %+v", s.Jobs)
			}
			j := s.Jobs[0]
			if j.Cron != "*/15 * * * *" || !slices.Equal(j.Command, []string{"./cleanup.sh"}) || j.Timeout != 5*time.Minute || !j.NeedsApp {
				t.Errorf("Jobs[0] = %+v", j)
			}
			if !slices.Equal(s.Jobs[1].Command, []string{"/bin/sh", "-c", "echo hi"}) || s.Jobs[1].NeedsApp {
				t.Errorf("Jobs[1] = %+v", s.Jobs[1])
			}
		}},
		{name: "jobs no command", yaml: "jobs: [{cron: '@daily'}]\n", field: "jobs[0].command", want: "required key is missing"},
		{name: "jobs bad needs_app", yaml: "jobs: [{cron: '@daily', command: x, needs_app: 'yes'}]\n", field: "jobs[0].needs_app", want: "expected true or false"},
		{name: "jobs bad cron", yaml: "jobs: [{cron: 'often', command: x}]\n", field: "jobs[0].cron", want: `got "often"`},
		{name: "jobs unknown zone", yaml: "jobs: [{cron: '@hourly', command: x}, {cron: 'CRON_TZ=Mars/Base @daily', command: x}]\n", field: "jobs[1].cron",
			want: `unknown time zone "Mars/Base" (expected CRON_TZ=Area/City from the tz database)`},
		{name: "jobs unknown key", yaml: "jobs: [{cron: '@daily', comand: x}]\n", field: "jobs[0].comand", want: "did you mean command?"},
		// unknown and misplaced keys
		{name: "unknown top key", yaml: "idel_timeout: 10m\n", field: "idel_timeout", want: "unknown key (did you mean idle_timeout? known keys: listen, upstream, command"},
		{name: "unknown key no hint", yaml: "color: blue\n", field: "color", want: "unknown key (known keys:"},
		{name: "key case matters", yaml: "Mode: always\n", field: "Mode", want: "did you mean mode?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			content := c.yaml
			if !c.full {
				content = minimal + c.yaml
			}
			p := writeFile(t, dir, "app.yaml", content)
			s, err := Load(p)
			if c.check != nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				c.check(t, s)
				return
			}
			if s != nil {
				t.Errorf("got a spec along with errors: %+v", s)
			}
			requireFieldError(t, err, p, c.field, c.want)
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	p := filepath.Join(t.TempDir(), "web.yaml")
	_, err := Parse(p, []byte("listen: 42\nmode: x\nidel: 1\nready: {http: x}\n"))
	fields := map[string]bool{}
	for _, fe := range fieldErrors(t, err) {
		fields[fe.Field] = true
	}
	for _, f := range []string{"listen", "command", "mode", "idel", "ready.http"} {
		if !fields[f] {
			t.Errorf("no error for %q; got %v", f, err)
		}
	}
	// One line per problem: errors.Join puts each on its own line.
	if n := len(strings.Split(err.Error(), "\n")); n != len(fields) {
		t.Errorf("error has %d lines for %d problems:\n%v", n, len(fields), err)
	}
}

// TestParseFormats checks that the same app reads the same from all three
// formats, whatever number types their parsers produce.
func TestParseFormats(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"web.yaml": `
listen: ["127.0.0.1:8080", "[::1]:8080"]
upstream: localhost:18080
command: [python3, -m, http.server, "18080"]
env: {GREETING: hello, N: 3}
mode: persistent
idle_timeout: 5m
stop_signal: SIGINT
ready: {http: /healthz}
max_pending: 7
match: {sni: [a.example.com]}
proxy_protocol: v1
wake: [{cron: "0 9 * * 1-5", keep: 2h}]
jobs: [{cron: "@daily", command: "echo hi", timeout: 1m, needs_app: true}]
`,
		"web.toml": `
listen = ["127.0.0.1:8080", "[::1]:8080"]
upstream = "localhost:18080"
command = ["python3", "-m", "http.server", "18080"]
env = {GREETING = "hello", N = 3}
mode = "persistent"
idle_timeout = "5m"
stop_signal = "SIGINT"
max_pending = 7
proxy_protocol = "v1"
[ready]
http = "/healthz"
[match]
sni = ["a.example.com"]
[[wake]]
cron = "0 9 * * 1-5"
keep = "2h"
[[jobs]]
cron = "@daily"
command = "echo hi"
timeout = "1m"
needs_app = true
`,
		"web.json": `{
"listen": ["127.0.0.1:8080", "[::1]:8080"],
"upstream": "localhost:18080",
"command": ["python3", "-m", "http.server", "18080"],
"env": {"GREETING": "hello", "N": 3},
"mode": "persistent",
"idle_timeout": "5m",
"stop_signal": "SIGINT",
"ready": {"http": "/healthz"},
"max_pending": 7,
"match": {"sni": ["a.example.com"]},
"proxy_protocol": "v1",
"wake": [{"cron": "0 9 * * 1-5", "keep": "2h"}],
"jobs": [{"cron": "@daily", "command": "echo hi", "timeout": "1m", "needs_app": true}]
}`,
	}
	var specs []*Spec
	for name, content := range files {
		s, err := Parse(filepath.Join(dir, name), []byte(content))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.MaxPending != 7 || s.Env["N"] != "3" || s.Mode != Persistent || s.Upstream != "127.0.0.1:18080" {
			t.Errorf("%s: %+v", name, s)
		}
		specs = append(specs, s)
	}
	for _, s := range specs[1:] {
		o := *s
		o.File = specs[0].File // the only field that differs by format
		if !o.Equal(specs[0]) {
			t.Errorf("%s differs from %s:\n%+v\n%+v", s.File, specs[0].File, o, *specs[0])
		}
	}
	// .yml is YAML too.
	if _, err := Parse(filepath.Join(dir, "web.yml"), []byte(files["web.yaml"])); err != nil {
		t.Errorf(".yml: %v", err)
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, content, want string }{
		{"bad.yaml", "listen: [a\n", "invalid YAML: line 1"},
		{"tabs.yaml", "listen: x\n\tcommand: y\n", "invalid YAML: line 2"},
		{"dupkey.yaml", "listen: ':1'\nlisten: ':2'\n", "already defined"},
		{"list.yaml", "- a\n- b\n", "expected a mapping of keys at the top level"},
		{"bad.json", "{\"listen\": [1,\n 2", "invalid JSON: line 2"},
		{"comma.json", "{\"listen\": \":1\",,}", "invalid JSON: line 1, column 17"},
		{"array.json", "[1]", "expected an object at the top level"},
		{"bad.toml", "listen = \n", "invalid TOML: line 1"},
		{"dup.toml", "a = 1\na = 2\n", "invalid TOML: line 2: key a is already defined"},
		{"app.ini", "listen=:1", `unknown file type ".ini"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			_, err := Parse(p, []byte(c.content))
			requireFieldError(t, err, p, "", c.want)
		})
	}
}

func TestParseBadName(t *testing.T) {
	for _, name := range []string{"Web.yaml", "_web.yaml", "web.app.yaml", "wéb.yaml"} {
		p := filepath.Join(t.TempDir(), name)
		_, err := Parse(p, []byte(minimal))
		requireFieldError(t, err, p, "", "[a-z0-9][a-z0-9_-]*")
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "gone.yaml")
	_, err := Load(p)
	requireFieldError(t, err, p, "", "reading app file")
}

func TestParseIsDeterministic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "web.yaml")
	data := []byte("listen: 1\ncommand: []\nzz: 1\naa: 2\nenv: {1a: x, 2b: y, 3c: z}\nwake: [{}, {cron: x}]\n")
	_, first := Parse(p, data)
	for range 20 {
		if _, err := Parse(p, data); err.Error() != first.Error() {
			t.Fatalf("errors differ between runs:\n%v\n---\n%v", first, err)
		}
	}
}

// TestParseReadmeExample parses the example app files of README.md's
// "Writing an app file" section, so that the documentation cannot drift
// from the parser: the annotated file on its own, and the wake and jobs
// example added to a minimal file.
func TestParseReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Writing an app file\n")
	if !ok {
		t.Fatal("README.md has no \"Writing an app file\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, block := range strings.Split(section, "```yaml\n")[1:] {
		yaml, _, _ := strings.Cut(block, "```")
		blocks = append(blocks, yaml)
	}
	if len(blocks) < 2 {
		t.Fatalf("README.md's app file section has %d YAML examples, want the app file and the schedule example", len(blocks))
	}
	dir := t.TempDir()
	s, err := Load(writeFile(t, dir, "web.yaml", blocks[0]))
	if err != nil {
		t.Fatalf("README example does not parse: %v\n%s", err, blocks[0])
	}
	if s.Upstream != "127.0.0.1:18080" || s.Ready.HTTP != "/healthz" || s.Env["GREETING"] != "hello" ||
		!slices.Contains(s.Command, "${PORT}") || s.Dir != filepath.Dir(s.File) || s.IdleTimeout != 10*time.Minute {
		t.Errorf("README example read as %+v", s)
	}
	s, err = Load(writeFile(t, dir, "cron.yaml", minimal+blocks[1]))
	if err != nil {
		t.Fatalf("README schedule example does not parse: %v\n%s", err, blocks[1])
	}
	if len(s.Wake) != 1 || s.Wake[0].Keep != 2*time.Hour || len(s.Jobs) != 1 || s.Jobs[0].Timeout != 5*time.Minute {
		t.Errorf("README schedule example read as wake %+v, jobs %+v", s.Wake, s.Jobs)
	}
}
