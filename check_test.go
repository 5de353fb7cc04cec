package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
