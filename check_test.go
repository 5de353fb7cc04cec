package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestCheckReportsEveryProblemAndExitsOne(t *testing.T) {
	apps := t.TempDir()
	testutil.WriteFile(t, filepath.Join(apps, "good.yaml"), "listen: \"127.0.0.1:9001\"\ncommand: [\"true\"]\n")
	testutil.WriteFile(t, filepath.Join(apps, "typo.yaml"), "listen: \"127.0.0.1:9002\"\ncommand: [\"true\"]\nidel_timeout: 5m\n")
	testutil.WriteFile(t, filepath.Join(apps, "nolisten.json"), `{"command": "true"}`)
	var stdout, stderr bytes.Buffer
	code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("check exit code = %d, want 1; output:\n%s%s", code, &stdout, &stderr)
	}
	out := stdout.String()
	for _, want := range []string{"typo.yaml", "idel_timeout", "nolisten.json", "listen"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "good.yaml") {
		t.Errorf("check output blames good.yaml:\n%s", out)
	}

	os.Remove(filepath.Join(apps, "typo.yaml"))
	os.Remove(filepath.Join(apps, "nolisten.json"))
	stdout.Reset()
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 0 {
		t.Fatalf("check on valid files exit code = %d; output:\n%s", code, &stdout)
	}
}

// check refuses a unix: listen in a directory others may write to, as the
// daemon does, and accepts one in a private directory.
func TestCheckRefusesAUnixListenInAnOpenDirectory(t *testing.T) {
	apps, open, private := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, filepath.Join(apps, "open.yaml"), "listen: \"unix:"+open+"/a.sock\"\ncommand: [\"true\"]\n")
	testutil.WriteFile(t, filepath.Join(apps, "private.yaml"), "listen: \"unix:"+private+"/a.sock\"\ncommand: [\"true\"]\n")
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 1 {
		t.Fatalf("check exit code = %d, want 1; output:\n%s%s", code, &stdout, &stderr)
	}
	out := stdout.String()
	if !strings.Contains(out, "open.yaml: listen[0]: directory of a unix: listen socket "+open+" is writable by group or others") {
		t.Errorf("check does not refuse the open directory:\n%s", out)
	}
	if strings.Contains(out, "private.yaml") {
		t.Errorf("check blames private.yaml:\n%s", out)
	}
}

// check refuses a unix: upstream in a directory others may write to,
// where they could plant a symlink to another socket, as the daemon does
// (unixRoutes), and accepts one in a directory of the app's user.
func TestCheckRefusesAUnixUpstreamInAnOpenDirectory(t *testing.T) {
	apps, open, private := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, filepath.Join(apps, "open.yaml"), "listen: 127.0.0.1:1\nupstream: \"unix:"+open+"/a.sock\"\ncommand: [\"true\"]\n")
	testutil.WriteFile(t, filepath.Join(apps, "private.yaml"), "listen: 127.0.0.1:2\nupstream: \"unix:"+private+"/a.sock\"\ncommand: [\"true\"]\n")
	// The daemon's admin socket would take the app's clients for its own.
	state := t.TempDir()
	testutil.WriteFile(t, filepath.Join(apps, "admin.yaml"), "listen: 127.0.0.1:3\nupstream: \"unix:"+state+"/dynapm.sock\"\ncommand: [\"true\"]\n")
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"check", "-apps", apps, "-state", state}, &stdout, &stderr); code != 1 {
		t.Fatalf("check exit code = %d, want 1; output:\n%s%s", code, &stdout, &stderr)
	}
	out := stdout.String()
	if !strings.Contains(out, "open.yaml: upstream: directory of the unix: upstream socket "+open+" is writable by group or others") {
		t.Errorf("check does not refuse the open directory:\n%s", out)
	}
	if !strings.Contains(out, "admin.yaml: upstream: directory of the unix: upstream socket "+state+" is inside the state directory") {
		t.Errorf("check does not refuse the state directory:\n%s", out)
	}
	if strings.Contains(out, "private.yaml") {
		t.Errorf("check blames private.yaml:\n%s", out)
	}
}

// The example app files are valid as shipped. They are checked in a copy
// with the modes a root daemon accepts, so that the test is about their
// content and not about the umask the repository was checked out with.
func TestExampleAppsAreValid(t *testing.T) {
	root := t.TempDir()
	apps := filepath.Join(root, "apps.d")
	if err := os.Mkdir(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("apps.d")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("apps.d", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		testutil.WriteFile(t, filepath.Join(apps, e.Name()), string(data)) // 0644
	}
	if len(entries) == 0 {
		t.Fatal("no example app files in apps.d")
	}
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 0 {
		t.Fatalf("the example apps.d does not pass check:\n%s%s", &stdout, &stderr)
	}
}

// An app on the daemon's own metrics address would be refused by the
// daemon: check says so, naming the file, the field and the setting.
func TestCheckReportsAClashWithTheMetricsAddress(t *testing.T) {
	apps, etc := t.TempDir(), t.TempDir()
	metrics := testutil.FreeAddr(t)
	config := filepath.Join(etc, "dynapm.yaml")
	testutil.WriteFile(t, config, "metrics: \""+metrics+"\"\napps_dir: "+apps+"\n")
	testutil.WriteFile(t, filepath.Join(apps, "good.yaml"), "listen: \"127.0.0.1:9001\"\ncommand: [\"true\"]\n")
	testutil.WriteFile(t, filepath.Join(apps, "clash.yaml"), "listen: [\"127.0.0.1:9002\", \""+metrics+"\"]\ncommand: [\"true\"]\n")
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"check", "-config", config}, &stdout, &stderr); code != 1 {
		t.Fatalf("check exit code = %d, want 1; output:\n%s%s", code, &stdout, &stderr)
	}
	want := filepath.Join(apps, "clash.yaml") + ": listen[1]: \"" + metrics + "\" is also the daemon's metrics address (setting `metrics` in " + config + ")"
	if out := stdout.String(); !strings.Contains(out, want) || strings.Contains(out, "good.yaml") || !strings.Contains(out, "1 problem(s); 1 app file(s) valid") {
		t.Errorf("check output:\n%s\nwant the line %q, good.yaml valid", out, want)
	}
}

// check reports what the daemon would refuse at a start: a program that
// is in neither PATH nor dir (errors), and a listen address another
// process holds now (a warning, naming it: it depends on the moment).
func TestCheckReportsAMissingProgramAndWarnsOfAHeldListenAddress(t *testing.T) {
	apps := t.TempDir()
	held := testutil.FreeAddr(t)
	holder := exec.Command(testutil.TestApp(t), "-mode", "echo", "-listen", held)
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	testutil.Eventually(t, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", held)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "the holder does not listen on %s", held)

	testutil.WriteFile(t, filepath.Join(apps, "busy.yaml"), fmt.Sprintf("listen: %q\ncommand: [\"true\"]\n", held))
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 0 {
		t.Fatalf("a held address alone: exit %d, want 0 (a warning); output:\n%s%s", code, &stdout, &stderr)
	}
	want := fmt.Sprintf("warning: %s: listen[0]: %s is in use now by pid %d (%s -mode echo -listen %s), so the daemon could not serve the app;",
		filepath.Join(apps, "busy.yaml"), held, holder.Process.Pid, testutil.TestApp(t), held)
	if !strings.HasPrefix(stdout.String(), want) || !strings.Contains(stdout.String(), "ok: 1 app file(s) valid in "+apps+" (1 warning(s))") {
		t.Errorf("output:\n%s\nwant it to start %q", &stdout, want)
	}

	testutil.WriteFile(t, filepath.Join(apps, "nocmd.yaml"), "listen: \"127.0.0.1:9001\"\ncommand: [no-such-program-dynapm]\n")
	if err := os.MkdirAll(filepath.Join(apps, "srv"), 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, filepath.Join(apps, "norel.yaml"), "listen: \"127.0.0.1:9002\"\ncommand: [./bin/server]\ndir: srv\n")
	stdout.Reset()
	if code := dispatch([]string{"check", "-apps", apps}, &stdout, &stderr); code != 1 {
		t.Fatalf("missing programs: exit %d, want 1; output:\n%s%s", code, &stdout, &stderr)
	}
	for _, want := range []string{
		filepath.Join(apps, "nocmd.yaml") + `: command: program "no-such-program-dynapm" not found: no executable file of that name in PATH (`,
		filepath.Join(apps, "norel.yaml") + `: command: program "./bin/server" (` + filepath.Join(apps, "srv", "bin", "server") + `) not found: no such file`,
		"2 problem(s) (1 warning(s)); 1 app file(s) valid in " + apps,
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, &stdout)
		}
	}
}
