package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

func TestUserAndGroupNeedARootDaemon(t *testing.T) {
	specs := []*appfile.Spec{
		{Name: "plain", File: "/apps/plain.yaml"},
		{Name: "web", File: "/apps/web.yaml", User: "www"},
		{Name: "db", File: "/apps/db.yaml", Group: "db"},
	}
	if errs := privilegeErrors(specs, 0); errs != nil {
		t.Fatalf("root daemon refused %v", errs)
	}
	errs := privilegeErrors(specs, 1000)
	if len(errs) != 2 {
		t.Fatalf("non-root daemon: %d errors, want 2: %v", len(errs), errs)
	}
	for i, want := range []string{"/apps/web.yaml: user: dynapm runs as uid 1000, not root", "/apps/db.yaml: group: dynapm runs as uid 1000"} {
		if got := errs[i].Err.Error(); !strings.Contains(got, want) {
			t.Errorf("error %q lacks %q", got, want)
		}
	}
}

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

func TestCheckAsRootRefusesWhatARootDaemonRefuses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check is made when running as root")
	}
	apps := t.TempDir()
	good, loose := filepath.Join(apps, "good.yaml"), filepath.Join(apps, "loose.yaml")
	testutil.WriteFile(t, good, "listen: \"127.0.0.1:9001\"\ncommand: [\"true\"]\n")
	testutil.WriteFile(t, loose, "listen: \"127.0.0.1:9002\"\ncommand: [\"true\"]\n")
	if err := os.Chmod(loose, 0o664); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(apps, 0o757); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("check exit code = %d, want 1; output:\n%s%s", code, &stdout, &stderr)
	}
	out := stdout.String()
	// The daemon's words: the watcher reports exactly these errors.
	for _, path := range []string{apps, loose} {
		want := appfile.CheckNotWritableByOthers(path).Error()
		if !strings.Contains(out, want+"\n") {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "chmod go-w "+loose) || !strings.Contains(out, "apps directory is writable") {
		t.Errorf("check output does not say how to fix both:\n%s", out)
	}
	if strings.Contains(out, good) {
		t.Errorf("check blames good.yaml:\n%s", out)
	}
	if !strings.Contains(out, "2 problem(s); 1 app file(s) valid") {
		t.Errorf("check summary wrong:\n%s", out)
	}

	// Fixed modes pass.
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 0 {
		t.Fatalf("check after fixing the modes exit code = %d; output:\n%s", code, &stdout)
	}
}

// nobody is the account the ownership tests give app files to: it exists
// on every system the tests run on as root (uid 65534, group nogroup).
const nobody = 65534

// chownNobody gives path to nobody, as if that user had written it.
func chownNobody(t *testing.T, path string) {
	t.Helper()
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
}

func TestRootRefusesAnAppFileItDoesNotOwnUnlessTheAppRunsAsItsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check is made by a daemon running as root")
	}
	dir := t.TempDir()
	owned, rootOwned := filepath.Join(dir, "web.yaml"), filepath.Join(dir, "root.yaml")
	testutil.WriteFile(t, owned, "")
	testutil.WriteFile(t, rootOwned, "")
	chownNobody(t, owned)
	for _, tc := range []struct {
		name string
		spec appfile.Spec
		// field and want describe the refusal; want "" means accepted.
		field, want string
	}{
		{"root's file", appfile.Spec{File: rootOwned}, "", ""},
		{"runs as its owner", appfile.Spec{File: owned, User: "nobody"}, "", ""},
		{"runs as its owner's uid", appfile.Spec{File: owned, User: "65534"}, "", ""},
		{"runs as its owner with its group", appfile.Spec{File: owned, User: "nobody", Group: "65534"}, "", ""},
		{"no user", appfile.Spec{File: owned},
			"", "owned by nobody (uid 65534), not root, and dynapm runs as root: nobody (uid 65534) could make root run anything; fix it with: chown root " + owned + ", or set user: nobody"},
		{"another user", appfile.Spec{File: owned, User: "root"},
			"user", "the app would run as uid 0, not as the file's owner; fix it with: chown root " + owned + ", or set user: nobody"},
		{"a group its owner is not in", appfile.Spec{File: owned, User: "nobody", Group: "0"},
			"group", "gid 0, which is not one of nobody (uid 65534)'s groups"},
		{"an unknown user", appfile.Spec{File: owned, User: "no-such-user-here"}, "user", `looking up user "no-such-user-here"`},
		{"a driver acting as root", appfile.Spec{File: owned, User: "nobody", Driver: appfile.DriverCommand},
			"driver", "driver: command acts as the daemon's user (root)"},
		{"jobs, which run as its user too", appfile.Spec{File: owned, User: "nobody", Jobs: []appfile.Job{{Command: []string{"true"}}}}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ownerError(&tc.spec)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *appfile.FieldError
			if !errors.As(err, &fe) || fe.File != tc.spec.File || fe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v (field %q); want on field %q of %s: %q", err, fieldOf(fe), tc.field, tc.spec.File, tc.want)
			}
		})
	}
}

func fieldOf(fe *appfile.FieldError) string {
	if fe == nil {
		return "<none>"
	}
	return fe.Field
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
	chownNobody(t, refused)
	chownNobody(t, asOwner)

	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stdout.String(), refused+": app file is owned by nobody (uid 65534), not root") ||
		strings.Contains(stdout.String(), asOwner) {
		t.Fatalf("check: exit %d, output:\n%s%s\nwant refused.yaml refused, asowner.yaml accepted", code, &stdout, &stderr)
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
