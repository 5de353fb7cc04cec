package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// The README's first steps, run as a new user would, on the example
// apps.d/ with their own addresses (ports the whole machine shares are
// swapped for free ones).

// readmeExampleCommands are the commands of the README's "Two commands"
// section that TestREADMEExampleApps runs, as written there.
var readmeExampleCommands = []string{
	"curl http://127.0.0.1:8080/",
	"echo hi | curl -s telnet://127.0.0.1:8081",
	"echo hi | nc 127.0.0.1 8081",
	"go run . check",
	"curl 127.0.0.1:8082",
}

// readmeCommandsRunElsewhere names, for each other command the README
// gives, the test that runs it (with the test's app instead of web).
var readmeCommandsRunElsewhere = map[string]string{
	"go run .":                                  "TestREADMEExampleApps", // the built binary, on a copy of apps.d
	"dynapm status":                             "TestCLIStatusStartStopRestartLogs",
	"dynapm status -json":                       "TestCLIStatusStartStopRestartLogs",
	"dynapm start web":                          "TestCLIStatusStartStopRestartLogs",
	"dynapm stop web":                           "TestCLIStatusStartStopRestartLogs",
	"dynapm restart web":                        "TestCLIStatusStartStopRestartLogs",
	"dynapm logs web -n 100":                    "TestCLIStatusStartStopRestartLogs",
	"dynapm logs web -f":                        "TestCLILogsFollow",
	"dynapm status -state /var/lib/dynapm":      "TestCLIStatusStartStopRestartLogs",
	"dynapm logs web -f -state /var/lib/dynapm": "TestCLILogsFollow",
	"dynapm restart web -state /var/lib/dynapm": "TestCLIStatusStartStopRestartLogs",
	"dynapm pin minecraft -for 3h":              "TestPinAndDisableSurviveADaemonRestart",
	"dynapm unpin minecraft":                    "TestPinAndDisableSurviveADaemonRestart",
	"dynapm disable wiki":                       "TestPinAndDisableSurviveADaemonRestart",
	"dynapm enable wiki":                        "TestPinAndDisableSurviveADaemonRestart",
}

// readmeSystemdCommands install the unit on a machine run by systemd,
// which a test cannot be; TestServiceUnitIsANotifyServiceTheREADMEInstalls
// checks that they install what the unit uses.
var readmeSystemdCommands = []string{
	"sudo useradd --system --home-dir /var/lib/dynapm --shell /usr/sbin/nologin dynapm",
	"sudo install -m 0755 dynapm /usr/local/bin/dynapm",
	"sudo install -d -m 0755 /etc/dynapm /etc/dynapm/apps.d",
	"printf 'apps_dir: /etc/dynapm/apps.d\\n' | sudo tee /etc/dynapm/dynapm.yaml",
	"sudo install -m 0644 contrib/dynapm.service /etc/systemd/system/",
	"sudo systemctl daemon-reload",
	"sudo systemctl enable --now dynapm",
}

// readmeCommands returns every command the README gives a user to run:
// each line of its sh blocks (comments dropped, "sudo -u USER" too), and
// the code spans of its "Two commands" section that start with a program
// (a span that only begins another one, `go run`, is prose).
func readmeCommands(t *testing.T) []string {
	t.Helper()
	readme := readDoc(t, "README.md")
	var cmds []string
	add := func(c string) {
		c = strings.TrimSpace(c)
		if c != "" && !slices.Contains(cmds, c) {
			cmds = append(cmds, c)
		}
	}
	block := false
	for line := range strings.Lines(readme) {
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "```sh":
			block = true
		case strings.HasPrefix(line, "```"):
			block = false
		case block:
			c, _, _ := strings.Cut(line, " #")
			if !strings.HasPrefix(strings.TrimSpace(c), "#") {
				add(regexp.MustCompile(`^sudo -u \S+ `).ReplaceAllString(c, ""))
			}
		}
	}
	_, section, ok := strings.Cut(readme, "\n## Two commands\n")
	if !ok {
		t.Fatal(`README.md has no "## Two commands" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var spans []string
	for _, m := range codeSpan.FindAllStringSubmatch(section, -1) {
		if first, _, _ := strings.Cut(m[1], " "); slices.Contains([]string{"go", "curl", "echo", "nc", "dynapm"}, first) {
			spans = append(spans, m[1])
		}
	}
	for _, s := range spans {
		prefix := slices.ContainsFunc(spans, func(o string) bool { return o != s && strings.HasPrefix(o, s+" ") })
		if !prefix {
			add(s)
		}
	}
	return cmds
}

// Every command in the README is run by a test or by .ci/run, so that
// none of them can stop working unnoticed.
func TestREADMECommandsAreRunByATestOrCI(t *testing.T) {
	ci := readDoc(t, ".ci", "run")
	defined := map[string]bool{}
	for _, name := range []string{"TestREADMEExampleApps", "TestServiceUnitIsANotifyServiceTheREADMEInstalls"} {
		defined[name] = true
	}
	for _, name := range readmeCommandsRunElsewhere {
		defined[name] = false
	}
	src, _ := filepath.Glob(filepath.Join(repoRoot, "*", "*_test.go"))
	top, _ := filepath.Glob(filepath.Join(repoRoot, "*_test.go"))
	for _, f := range append(src, top...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for name := range defined {
			if strings.Contains(string(b), "\nfunc "+name+"(") {
				defined[name] = true
			}
		}
	}
	for name, ok := range defined {
		if !ok {
			t.Errorf("%s, named as running a README command, is not a test", name)
		}
	}
	cmds := readmeCommands(t)
	if len(cmds) < 15 {
		t.Fatalf("only %d commands found in README.md (%q): readmeCommands no longer reads it", len(cmds), cmds)
	}
	for _, c := range cmds {
		switch {
		case slices.Contains(readmeExampleCommands, c), readmeCommandsRunElsewhere[c] != "",
			slices.Contains(readmeSystemdCommands, c), strings.Contains(ci, "\n"+c+"\n"):
		default:
			t.Errorf("README.md gives the command %q, which no test and not .ci/run runs", c)
		}
	}
	for _, c := range append(slices.Clone(readmeExampleCommands), readmeSystemdCommands...) {
		if !slices.Contains(cmds, c) {
			t.Errorf("%q is run as the README's, but README.md no longer gives it", c)
		}
	}
}

// The example apps wake, answer and let the README's commands end; check
// passes them; a copy with another listen address is served, and closed
// again once removed.
func TestREADMEExampleApps(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (Debian: apt-get install curl); the README's commands use it")
	}
	for _, c := range readmeExampleCommands {
		if !strings.Contains(readDoc(t, "README.md"), "`"+c+"`") {
			t.Fatalf("README.md no longer gives `%s`", c)
		}
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	hello, echo, hi := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	echoUpstream := testutil.FreePort(t)
	// What the README's commands and the example files say, and what this
	// test uses instead.
	swap := strings.NewReplacer(
		"127.0.0.1:8080", hello, "127.0.0.1:8081", echo, "127.0.0.1 8081", strings.Replace(echo, ":", " ", 1),
		"127.0.0.1:8082", hi, "18081", strconv.Itoa(echoUpstream),
		`dir: ".."`, `dir: "`+root+`"`, `dir = ".."`, `dir = "`+root+`"`)
	apps := t.TempDir()
	for _, name := range []string{"hello.yaml", "echo.toml"} {
		orig := readDoc(t, "apps.d", name)
		copied := swap.Replace(orig)
		if !strings.Contains(copied, root) || strings.Contains(copied, "808") {
			t.Fatalf("apps.d/%s changed; this test no longer moves it to free ports and the repository:\n%s", name, copied)
		}
		testutil.WriteFile(t, filepath.Join(apps, name), copied)
	}
	// sh runs each command as the README gives it; a command that does
	// not end is a failure.
	run := func(c string) string {
		t.Helper()
		if strings.Contains(c, "| nc ") {
			if _, err := exec.LookPath("nc"); err != nil {
				t.Logf("nc is not installed; not running %q", c)
				return ""
			}
		}
		// go run compiles the example the first time.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		line := swap.Replace(c)
		if rest, ok := strings.CutPrefix(line, "go run . "); ok {
			line = dynapmBin + " " + rest + " -apps " + apps
		}
		out, err := exec.CommandContext(ctx, "sh", "-c", line).CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("%q (as %q) did not end within 2 minutes; output %q", c, line, out)
		}
		if err != nil {
			t.Fatalf("%q (as %q): %v; output %q", c, line, err, out)
		}
		return string(out)
	}

	if out := run("go run . check"); !strings.HasPrefix(out, "ok: 2 app file(s) valid") {
		t.Errorf("check of the example apps: %q", out)
	}
	startDaemon(t, apps)
	if out := run("curl http://127.0.0.1:8080/"); !strings.Contains(out, "Hello from a DynaPM app") {
		t.Errorf("hello answered %q", out)
	}
	for _, c := range readmeExampleCommands[1:3] {
		if out := run(c); out != "hi\n" && !(out == "" && strings.Contains(c, "| nc ")) {
			t.Errorf("%q answered %q, want \"hi\\n\"", c, out)
		}
	}

	// The hot reload the README suggests.
	helloYAML := filepath.Join(apps, "hello.yaml")
	b, err := os.ReadFile(helloYAML)
	if err != nil {
		t.Fatal(err)
	}
	hiYAML := filepath.Join(apps, "hi.yaml")
	testutil.WriteFile(t, hiYAML, strings.ReplaceAll(string(b), hello, hi))
	testutil.Eventually(t, reloadWait, func() bool {
		c, err := net.Dial("tcp", hi)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "hi.yaml's %s not listened on", hi)
	if out := run("curl 127.0.0.1:8082"); !strings.Contains(out, "Hello from a DynaPM app") {
		t.Errorf("hi answered %q", out)
	}
	if err := os.Remove(hiYAML); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, reloadWait, func() bool {
		c, err := net.Dial("tcp", hi)
		if err == nil {
			c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	}, "%s still open after hi.yaml was removed", hi)
}
