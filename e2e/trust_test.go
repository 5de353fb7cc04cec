package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// A root daemon beside a user who is not root (nobody): the trust
// boundaries of issue 19. Each test is an attack that worked before.

// mkdir makes a directory with mode, as root.
func mkdir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// runRefused runs the daemon with args and returns its exit code and
// stderr, failing the test if it is still running after a while: a
// daemon that should refuse to start but started.
func runRefused(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, dynapmBin, append([]string{"run"}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the daemon started and ran for 20s; output:\n%s", &stderr)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// The attack: the apps directory was nobody's (mode 0755), and the root
// daemon started without a word; nobody could then drop in any app file.
// The same for the state directory, the settings file, and a directory
// above any of them: the daemon does not start, and says which path and
// how to fix it.
func TestRootDaemonRefusesToStartWithAPathAnotherUserControls(t *testing.T) {
	needRoot(t, "the attack needs a root daemon and a second user")
	for _, tc := range []struct {
		name string
		// setup returns the flags of the run, and the words the refusal
		// must have.
		setup func(t *testing.T) (args []string, want string)
	}{
		{"apps directory of another user", func(t *testing.T) ([]string, string) {
			apps := t.TempDir()
			testutil.ChownNobody(t, apps)
			return []string{"-apps", apps, "-state", stateDir(t)},
				"apps directory " + apps + " is owned by nobody (uid 65534), not root; fix it with: chown root " + apps
		}},
		{"state directory of another user", func(t *testing.T) ([]string, string) {
			state := stateDir(t)
			testutil.ChownNobody(t, state)
			return []string{"-apps", t.TempDir(), "-state", state},
				"state directory " + state + " is owned by nobody (uid 65534), not root; fix it with: chown root " + state
		}},
		{"settings file of another user", func(t *testing.T) ([]string, string) {
			config := filepath.Join(t.TempDir(), "dynapm.yaml")
			testutil.WriteFile(t, config, "log: {level: info}\n")
			testutil.ChownNobody(t, config)
			return []string{"-apps", t.TempDir(), "-state", stateDir(t), "-config", config},
				"settings file " + config + " is owned by nobody (uid 65534), not root; fix it with: chown root " + config
		}},
		{"a directory above the apps directory anyone can write", func(t *testing.T) ([]string, string) {
			base := mkdir(t, filepath.Join(t.TempDir(), "srv"), 0o777)
			apps := mkdir(t, filepath.Join(base, "apps"), 0o755)
			return []string{"-apps", apps, "-state", stateDir(t)},
				base + ", on the way to the apps directory " + apps + ", is writable by group or others (mode 0777); fix it with: chmod go-w " + base
		}},
		{"a directory above the state directory of another user", func(t *testing.T) ([]string, string) {
			base := mkdir(t, filepath.Join(stateDir(t), "var"), 0o755)
			testutil.ChownNobody(t, base)
			state := filepath.Join(base, "state")
			return []string{"-apps", t.TempDir(), "-state", state},
				base + ", on the way to the state directory " + state + ", is owned by nobody (uid 65534), not root; fix it with: chown root " + base
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, want := tc.setup(t)
			code, errOut := runRefused(t, args...)
			if code != 1 || !strings.Contains(errOut, want) {
				t.Fatalf("run: exit %d, output:\n%s\nwant exit 1 saying %q", code, errOut, want)
			}
		})
	}
}

// The attack: a chmod 777 of a running daemon's apps directory went
// unnoticed, and a file anyone dropped in next was served as root.
func TestRootDaemonStopsReloadingAnAppsDirMadeWritableUntilFixed(t *testing.T) {
	needRoot(t, "the attack needs a root daemon and a second user")
	apps := t.TempDir()
	first, added := testutil.FreeAddr(t), testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "first.yaml"), testutil.EchoApp(t, first, filepath.Join(t.TempDir(), "pid"), ""))
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, "log: {level: debug}\n")
	d := startDaemon(t, apps, "-config", config)

	if err := os.Chmod(apps, 0o777); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "level=ERROR", "apps directory cannot be trusted", "fix it with: chmod go-w "+apps)
	testutil.WriteFile(t, filepath.Join(apps, "added.yaml"), testutil.EchoApp(t, added, filepath.Join(t.TempDir(), "pid"), ""))
	d.waitLog(t, "level=DEBUG", "reload refused: the apps directory cannot be trusted")
	if !refused(added) {
		t.Fatal("an app file dropped into an apps directory anyone can write is served")
	}
	// The apps in force stay.
	if got := testutil.EchoOnce(t, first, "still"); got != "still" {
		t.Fatalf("echo from the app in force = %q", got)
	}

	if err := os.Chmod(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "apps directory can be trusted again")
	testutil.Eventually(t, reloadWait, func() bool { return tryEcho(added, "fixed") },
		"the app file added meanwhile is not served once the directory is fixed")
}

// The attack: nobody made an app's log start with a YAML document and
// linked apps.d/pwn.yaml to STATE/logs/adv.log, a file root owns, which
// the owner check followed: pwn ran as root. No app file may resolve into
// the state directory; and one whose target lies in a directory of
// nobody's is nobody's, whoever owns the link and the target.
func TestRootDaemonRefusesAnAppFileLinkedIntoItsStateDirOrAUsersDir(t *testing.T) {
	needRoot(t, "the attack needs a root daemon and a second user")
	apps, state := t.TempDir(), stateDir(t)
	logs := mkdir(t, filepath.Join(state, "logs"), 0o700)
	pwnAddr, homeAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	adv := filepath.Join(logs, "adv.log")
	testutil.WriteFile(t, adv, testutil.EchoApp(t, pwnAddr, filepath.Join(t.TempDir(), "pid"), ""))
	home := mkdir(t, filepath.Join(t.TempDir(), "home"), 0o755)
	testutil.ChownNobody(t, home)
	web := filepath.Join(home, "web.yaml")
	testutil.WriteFile(t, web, testutil.EchoApp(t, homeAddr, filepath.Join(t.TempDir(), "pid"), ""))
	pwn, linked := filepath.Join(apps, "pwn.yaml"), filepath.Join(apps, "web.yaml")
	for link, target := range map[string]string{pwn: adv, linked: web} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}

	// The first scan is applied before the daemon says it is ready.
	d := startDaemon(t, apps, "-state", state)
	for _, addr := range []string{pwnAddr, homeAddr} {
		if !refused(addr) {
			t.Errorf("%s is served: an app file another user controls runs as root", addr)
		}
	}
	d.waitLog(t, "level=ERROR", pwn+": app file resolves to "+adv+", inside the state directory "+state)
	d.waitLog(t, "level=ERROR", linked+": app file can be changed by nobody (uid 65534), who owns "+home+", not root")
}

// The attack: nobody, who owned the state directory, planted
// logs/adv.log -> /root/target, and the app's output was appended to the
// target. The planted link goes (with a warning) and the app's output goes
// to a file of the daemon's own.
func TestRootDaemonDoesNotWriteAnAppsLogThroughAPlantedSymlink(t *testing.T) {
	needRoot(t, "the attack needs a root daemon and a second user")
	apps, state := t.TempDir(), stateDir(t)
	logs := mkdir(t, filepath.Join(state, "logs"), 0o700)
	target := filepath.Join(t.TempDir(), "target")
	testutil.WriteFile(t, target, "original\n")
	adv := filepath.Join(logs, "adv.log")
	if err := os.Symlink(target, adv); err != nil {
		t.Fatal(err)
	}
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "adv.yaml"), testutil.EchoApp(t, listen, filepath.Join(t.TempDir(), "pid"), ""))
	d := startDaemon(t, apps, "-state", state)
	if got := testutil.EchoOnce(t, listen, "wake"); got != "wake" {
		t.Fatalf("echo = %q", got)
	}
	// The start's header, through whatever adv.log is now.
	testutil.Eventually(t, reloadWait, func() bool {
		got, _ := os.ReadFile(adv)
		return strings.Contains(string(got), "--- starting at ")
	}, "the app's start is not in its log")
	if got, err := os.ReadFile(target); err != nil || string(got) != "original\n" {
		t.Fatalf("the planted link's target now holds %q (%v)", got, err)
	}
	if fi, err := os.Lstat(adv); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the app's log is not a file of the daemon's own: %v, %v", fi.Mode(), err)
	}
	d.waitLog(t, "level=WARN", "removed a file the daemon did not write from the log directory", "file="+adv, "found=\"a symlink to "+target+"\"")
}
