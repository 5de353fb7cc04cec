package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

// A program started with ready: {notify: true} is served once it sends
// READY=1, and what it says with STATUS= shows in dynapm status, in the
// table and in -json.
func TestNotifyAppsStatusTextShowsInDynapmStatus(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [%q, \"-mode\", \"echo\", \"-notify\", \"serving 3 tables\"]\nready: {notify: true}\nidle_timeout: 10m\n",
		listen, testutil.TestApp(t)))
	startDaemon(t, apps, "-state", state)
	if got := testutil.EchoOnce(t, listen, "hello"); got != "hello" {
		t.Fatalf("echo through a notify app: %q", got)
	}
	if a := statusOf(t, state, "web"); a["status"] != "serving 3 tables" {
		t.Errorf("status -json: %v, want status \"serving 3 tables\"", a)
	}
	code, out, errOut := dynapm(t, "status", "-state", state)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("status: exit %d, %q, %s", code, out, errOut)
	}
	col := strings.Index(lines[0], "STATUS")
	if col < 0 || !strings.HasPrefix(lines[1][col:], "serving 3 tables") {
		t.Errorf("the STATUS column does not show the program's text:\n%s", out)
	}
}

// dynapm check reports a bad ready: with the file, the field and what was
// expected, one line each.
func TestCheckReportsBadReadyKeys(t *testing.T) {
	apps := t.TempDir()
	testutil.WriteFile(t, filepath.Join(apps, "a.yaml"), "listen: '127.0.0.1:1'\ncommand: x\nready: {notify: true, log: ready}\n")
	testutil.WriteFile(t, filepath.Join(apps, "b.yaml"), "listen: '127.0.0.1:2'\ncommand: x\nready: {log: 'ready (', tcp: {send: PING}, exec: x}\n")
	code, out, _ := dynapm(t, "check", "-apps", apps)
	if code != 1 {
		t.Fatalf("check: exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		filepath.Join(apps, "a.yaml") + ": ready: expected one of http, notify, command, log, tcp, got notify and log",
		filepath.Join(apps, "b.yaml") + `: ready.log: expected a regular expression (Go's syntax), got "ready ("`,
		filepath.Join(apps, "b.yaml") + ": ready.tcp.expect: required key is missing",
		filepath.Join(apps, "b.yaml") + ": ready.exec: unknown key (known keys: http, notify, command, log, tcp)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}
