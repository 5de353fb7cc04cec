package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// tool is an outside program some scenarios need, with the Debian package
// that brings it and what the run lacks without it.
type tool struct {
	name      string
	pkg       string
	scenarios []string // -only names that need it
	without   string
}

var tools = []tool{
	{"haproxy", "haproxy", []string{"warm", "bulk", "redis", "pgbench"},
		"HAProxy is not installed: the haproxy columns are empty"},
	{"wrk", "wrk", []string{"warm", "shared"},
		"wrk is not installed: the keep-alive, new-connection and latency scenarios were skipped"},
	{"nginx", "nginx", []string{"udp"},
		"nginx is not installed: the UDP scenario's nginx column is empty"},
	{"ngx_stream_module", "libnginx-mod-stream", []string{"udp"},
		"nginx's stream module is not installed: the UDP scenario's nginx column is empty"},
	{"redis-server", "redis-server", []string{"redis"},
		"redis-server is not installed: the redis-benchmark scenario was skipped"},
	{"redis-benchmark", "redis-tools", []string{"redis"},
		"redis-benchmark is not installed: the redis-benchmark scenario was skipped"},
	// PostgreSQL's programs live in a versioned directory, not on PATH.
	{"pgbench", "postgresql", []string{"pgbench"},
		"PostgreSQL (initdb, postgres, pgbench) is not installed: the pgbench scenario was skipped"},
}

// lookTool finds a tool's program: on PATH, for pgbench PostgreSQL's own
// directory (which also holds initdb and postgres), for nginx's stream
// module the file nginx loads.
func lookTool(name string) string {
	if name == "ngx_stream_module" {
		if _, err := os.Stat(nginxStreamModule); err != nil {
			return ""
		}
		return nginxStreamModule
	}
	if name == "pgbench" {
		if dir := pgBinDir(); dir != "" {
			return filepath.Join(dir, "pgbench")
		}
		return ""
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	return p
}

// pgBinDir is the directory of the newest PostgreSQL that has the server,
// initdb and pgbench (Debian: /usr/lib/postgresql/VERSION/bin), or the
// directory of initdb on PATH; "" when there is none.
func pgBinDir() string {
	complete := func(dir string) bool {
		for _, p := range []string{"initdb", "postgres", "pgbench", "pg_isready"} {
			if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		switch va, vb := version(a), version(b); {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if complete(d) {
			return d
		}
	}
	return ""
}

// tools installs, when asked, the missing programs of the scenarios to run
// (apt-get update first: a fresh container's lists are empty), and notes
// each one still missing.
func (b *bench) tools() {
	var missing []tool
	for _, t := range tools {
		if b.cfg.wantAny(t.scenarios) && lookTool(t.name) == "" {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 && b.cfg.install {
		var pkgs []string
		for _, t := range missing {
			if !slices.Contains(pkgs, t.pkg) {
				pkgs = append(pkgs, t.pkg)
			}
		}
		progress("installing %s with apt-get", strings.Join(pkgs, " "))
		cmd := exec.Command("sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "+strings.Join(pkgs, " "))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			progress("installing %s failed: %v", strings.Join(pkgs, " "), err)
		}
	}
	for _, t := range missing {
		if lookTool(t.name) != "" {
			continue
		}
		hint := "run with -install, or apt-get install " + t.pkg
		b.rep.note("%s (%s).", t.without, hint)
		progress("%s not installed: %s", t.name, hint)
	}
}
