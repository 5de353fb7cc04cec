package main

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// unitDirectives reads a systemd unit's Key=value lines (the last one of
// each key wins, as in systemd) and its leading comment.
func unitDirectives(t *testing.T, path string) (map[string]string, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dirs := map[string]string{}
	var header strings.Builder
	inHeader := true
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if c, ok := strings.CutPrefix(line, "#"); ok {
			if inHeader {
				header.WriteString(strings.TrimSpace(c) + " ")
			}
			continue
		}
		inHeader = false
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "[") {
			dirs[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return dirs, header.String()
}

// The unit is a Type=notify service whose main process is the daemon
// itself, stopped the way the daemon expects, and its header points at a
// README section that exists and installs the paths the unit uses.
func TestServiceUnitIsANotifyServiceTheREADMEInstalls(t *testing.T) {
	dirs, header := unitDirectives(t, "contrib/dynapm.service")
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`README\.md, section "([^"]+)"`).FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("the unit's header does not name a README section: %q", header)
	}
	if !strings.Contains(string(readme), "\n## "+m[1]+"\n") {
		t.Fatalf("README.md has no section %q, which the unit's header names", m[1])
	}
	section := string(readme)[strings.Index(string(readme), "\n## "+m[1]+"\n"):]
	if i := strings.Index(section[4:], "\n## "); i >= 0 {
		section = section[:i+4]
	}

	for key, want := range map[string]string{
		"Type":         "notify", // the daemon sends READY=1 once it serves
		"NotifyAccess": "main",   // and only the daemon
		"KillMode":     "mixed",  // SIGTERM to the daemon alone: it stops the apps
		"ExecReload":   "/bin/kill -HUP $MAINPID",
	} {
		if dirs[key] != want {
			t.Errorf("%s=%q, want %q", key, dirs[key], want)
		}
	}
	// Run in the foreground, as the main process: no fork, no pid file.
	exec := strings.Fields(dirs["ExecStart"])
	if len(exec) < 2 || exec[1] != "run" {
		t.Fatalf("ExecStart=%q does not run the daemon", dirs["ExecStart"])
	}
	// What the README installs is what the unit runs.
	for _, path := range []string{exec[0], flagValue(exec, "-config")} {
		if !strings.Contains(section, path) {
			t.Errorf("the README section does not install %s, which ExecStart uses", path)
		}
	}
	if got, want := flagValue(exec, "-state"), "%S/"+dirs["StateDirectory"]; got != want || dirs["StateDirectoryMode"] != "0700" {
		t.Errorf("-state %s with StateDirectory=%s mode %s: want -state %s, mode 0700 (the admin socket needs a private dir)",
			got, dirs["StateDirectory"], dirs["StateDirectoryMode"], want)
	}
	// systemd must not SIGKILL the daemon while it is still stopping apps.
	stop, err := time.ParseDuration(dirs["TimeoutStopSec"])
	if err != nil || stop <= shutdownGrace {
		t.Errorf("TimeoutStopSec=%s: want a duration above the daemon's own shutdown bound %v", dirs["TimeoutStopSec"], shutdownGrace)
	}
}

// flagValue returns the word after flag in args, or "".
func flagValue(args []string, flag string) string {
	for i, a := range args[:len(args)-1] {
		if a == flag {
			return args[i+1]
		}
	}
	return ""
}
