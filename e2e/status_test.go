package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

// status lists every app file: one refused when read (invalid, a bad
// name) or when put in force (its port held by another process) is an
// app in state error with the reason, in the table and in -json, until
// it is fixed.
func TestStatusShowsEveryAppFileRefusedOnesInStateError(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	app := func(listen, extra string) string {
		return fmt.Sprintf("listen: %q\ncommand: [%q]\n%s", listen, testutil.TestApp(t), extra)
	}
	testutil.WriteFile(t, filepath.Join(apps, "good.yaml"), app(testutil.FreeAddr(t), ""))
	bad := filepath.Join(apps, "bad.yaml")
	testutil.WriteFile(t, bad, app(testutil.FreeAddr(t), "idle_timeout: soon\n"))
	testutil.WriteFile(t, filepath.Join(apps, "taken.yaml"), app(held.Addr().String(), ""))
	testutil.WriteFile(t, filepath.Join(apps, "Web.yaml"), app(testutil.FreeAddr(t), ""))
	startDaemon(t, apps, "-state", state)

	for name, want := range map[string]string{
		"bad":      `idle_timeout: expected a duration`,
		"taken":    held.Addr().String() + " is already in use by pid " + strconv.Itoa(os.Getpid()) + " (",
		"Web.yaml": "[a-z0-9][a-z0-9_-]*",
		"good":     "",
	} {
		var a map[string]any
		testutil.Eventually(t, reloadWait, func() bool {
			a = statusOf(t, state, name)
			return want == "" || a["state"] == "error"
		}, "status of %s: %v", name, &a)
		le, _ := a["last_error"].(string)
		if want == "" {
			if a["state"] != "stopped" || le != "" {
				t.Errorf("good app: %v", a)
			}
			continue
		}
		if !strings.Contains(le, want) || strings.Contains(le, apps+"/") {
			t.Errorf("%s: last_error %q, want it to hold %q and not repeat the file's path", name, le, want)
		}
		if !strings.HasPrefix(fmt.Sprint(a["file"]), apps+"/") {
			t.Errorf("%s: file %v", name, a["file"])
		}
	}
	code, out, errOut := dynapm(t, "status", "-state", state)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "taken ") && !(strings.Contains(line, " error ") && strings.Contains(line, "is already in use by pid")) {
			t.Errorf("the table's row of taken does not say why: %q", line)
		}
	}
	if !strings.Contains(out, "\nbad ") || !strings.Contains(out, "\nWeb.yaml ") {
		t.Errorf("the table lacks a refused file:\n%s", out)
	}

	// Asked to start it, the daemon says why it cannot.
	code, _, errOut = dynapm(t, "start", "bad", "-state", state)
	if want := `dynapm: app "bad" is not served: its file ` + bad + ` was refused: idle_timeout: expected a duration`; code != 1 || !strings.HasPrefix(errOut, want) {
		t.Errorf("start bad: exit %d, stderr %q; want it to start %q", code, errOut, want)
	}

	testutil.WriteFile(t, bad, app(testutil.FreeAddr(t), "idle_timeout: 1m\n"))
	testutil.Eventually(t, reloadWait, func() bool { return statusOf(t, state, "bad")["state"] == "stopped" },
		"the fixed file is not a stopped app: %v", statusOf(t, state, "bad"))
	if le := statusOf(t, state, "bad")["last_error"]; le != nil {
		t.Errorf("fixed app still has last_error %v", le)
	}
}
