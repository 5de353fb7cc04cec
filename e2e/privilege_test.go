package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// A daemon running as root, beside users who are not: what it refuses to
// serve, whom it runs programs as, and what it never logs.

func TestRootDaemonRefusesAnAppFileOthersCanWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check is made by a daemon running as root")
	}
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	file := filepath.Join(apps, "echo.yaml")
	testutil.WriteFile(t, file, testutil.EchoApp(t, listen, filepath.Join(t.TempDir(), "pid"), ""))
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, apps)
	if want := "chmod go-w " + file; !strings.Contains(d.out.String(), want) {
		t.Fatalf("daemon log does not say %q:\n%s", want, d.out)
	}
	if tryEcho(listen, "x") {
		t.Fatal("an app file anyone can write is served")
	}
	// Fixing the mode is enough: the file is read again.
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return tryEcho(listen, "fixed") },
		"the app is not served once its mode is fixed")
}

func TestRootDaemonRefusesAnAppsDirOthersCanWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check is made by a daemon running as root")
	}
	apps := t.TempDir()
	if err := os.Chmod(apps, 0o777); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := dynapm(t, "run", "-apps", apps, "-state", stateDir(t))
	if code == 0 || !strings.Contains(errOut, "chmod go-w "+apps) {
		t.Fatalf("exit %d, output:\n%s\nwant a failure saying chmod go-w %s", code, errOut, apps)
	}
}

func TestSecretEnvValuesNeverReachTheDaemonLog(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	const secret = "s3cr3t-9f8e7d6c5b4a"
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, "log: {level: debug}\n")
	file := filepath.Join(apps, "app.yaml")
	pidfile := filepath.Join(t.TempDir(), "pid")
	app := func(extra string) string {
		return fmt.Sprintf("listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-pidfile\", %q%s]\nenv: {API_TOKEN: %q, OTHER: \"x-${PORT}\"}\nidle_timeout: 10m\nstop_timeout: 2s\n",
			listen, testutil.TestApp(t), pidfile, extra, secret)
	}
	testutil.WriteFile(t, file, app(""))
	d := startDaemon(t, apps, "-state", state, "-config", config)
	// A wake, a crash, a reload (changed command and env), a restart.
	testutil.EchoOnce(t, listen, "wake")
	pid := testutil.ReadPidFile(t, pidfile)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(d.out.String(), `msg="app exited"`) },
		"the crash was not logged")
	testutil.WriteFile(t, file, strings.Replace(app(", \"-backlog\", \"64\""), secret, secret+"-v2", 1))
	testutil.Eventually(t, 20*time.Second, func() bool { return tryEcho(listen, "reloaded") },
		"app not served after the reload")
	if code, _, errOut := dynapm(t, "restart", "app", "-state", state); code != 0 {
		t.Fatalf("restart: exit %d: %s", code, errOut)
	}
	out := d.out.String()
	if !strings.Contains(out, "level=DEBUG") {
		t.Fatalf("no debug lines: the test would prove little:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("the daemon's log holds the secret env value:\n%s", out)
	}
}

// A root daemon end to end: nobody's app file is refused until root owns
// it, or served as nobody when it says user: nobody; check says the same.
func TestRootDaemonServesAnAppFileOfAnotherUserOnlyAsThatUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check is made by a daemon running as root")
	}
	// nobody must be able to enter the app's directory and run the
	// program: a world-readable copy, out of the tests' private dirs.
	apps, err := os.MkdirTemp("", "owned")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(apps) })
	prog := filepath.Join(apps, "testapp")
	bin, err := os.ReadFile(testutil.TestApp(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	refusedAddr, asOwnerAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	refused, asOwner := filepath.Join(apps, "refused.yaml"), filepath.Join(apps, "asowner.yaml")
	testutil.WriteFile(t, refused, fmt.Sprintf("listen: %q\ncommand: [%q, \"-mode\", \"echo\"]\n", refusedAddr, prog))
	testutil.WriteFile(t, asOwner, fmt.Sprintf("listen: %q\ncommand: [%q, \"-mode\", \"echo\"]\nuser: nobody\nidle_timeout: 10m\n", asOwnerAddr, prog))
	testutil.ChownNobody(t, refused)
	testutil.ChownNobody(t, asOwner)

	if code, out, errOut := dynapm(t, "check", "-apps", apps); code != 1 ||
		!strings.Contains(out, refused+": app file is owned by nobody (uid 65534), not root") ||
		strings.Contains(out, asOwner) {
		t.Fatalf("check: exit %d, output:\n%s%s\nwant refused.yaml refused, asowner.yaml accepted", code, out, errOut)
	}

	state := stateDir(t)
	d := startDaemon(t, apps, "-state", state)
	if want := "chown root " + refused; !strings.Contains(d.out.String(), want) {
		t.Fatalf("daemon log does not say %q:\n%s", want, d.out)
	}
	if tryEcho(refusedAddr, "x") {
		t.Fatal("an app file of another user is served as root")
	}
	if got := testutil.EchoOnce(t, asOwnerAddr, "as nobody"); got != "as nobody" {
		t.Fatalf("echo from the app running as its owner = %q", got)
	}
	pid, ok := statusOf(t, state, "asowner")["pid"].(float64)
	if !ok || pid == 0 {
		t.Fatalf("asowner has no pid: %v", statusOf(t, state, "asowner"))
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", int(pid)))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Uid:\s+65534\s`).Match(status) {
		t.Fatalf("the app of nobody's file does not run as nobody:\n%s", status)
	}
	// Giving the file to root is enough: it is tried again without an edit.
	if err := os.Chown(refused, 0, 0); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return tryEcho(refusedAddr, "root's now") },
		"the app is not served once root owns its file")
}

// An app with user: and no dir: runs in the app file's directory, often
// private to root. The start, and check beforehand, say which directory
// that user cannot enter and what to do, rather than blaming the program
// with exec's "permission denied".
func TestUserWhoCannotEnterTheAppsDirectoryIsToldWhichAndToSetDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("user: needs a daemon running as root")
	}
	apps, state := t.TempDir(), stateDir(t) // t.TempDir is private to root (0700)
	file := filepath.Join(apps, "mc.yaml")
	testutil.WriteFile(t, file, fmt.Sprintf("listen: %q\ncommand: [%q, -mode, echo]\nuser: nobody\n", testutil.FreeAddr(t), testutil.TestApp(t)))
	blocked := apps
	for d := filepath.Dir(apps); d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			blocked = d
		}
	}
	want := fmt.Sprintf(`user "nobody" cannot enter %s (mode 0700, owner root) on the way to its working directory %s; set dir: in the app file`, blocked, apps)

	code, out, _ := dynapm(t, "check", "-apps", apps)
	if code != 1 || !strings.Contains(out, file+": user: "+want) {
		t.Errorf("check: exit %d, output %q; want %q", code, out, want)
	}
	startDaemon(t, apps, "-state", state)
	code, _, errOut := dynapm(t, "start", "mc", "-state", state)
	if code != 1 || !strings.Contains(errOut, `starting app "mc": start failed: `+want) || strings.Contains(errOut, "permission denied") {
		t.Errorf("start: exit %d, stderr %q; want %q", code, errOut, want)
	}
}
