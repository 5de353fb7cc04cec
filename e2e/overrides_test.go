package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// stopDaemon sends SIGTERM to d and waits until it has exited.
func stopDaemon(t *testing.T, d *runningDaemon) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit within 30s of SIGTERM")
	}
}

// dynapmOK runs a client command that must succeed and returns its output.
func dynapmOK(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := dynapm(t, args...)
	if code != 0 {
		t.Fatalf("dynapm %v: exit %d: %s%s", args, code, out, errOut)
	}
	return out
}

// `dynapm pin` keeps an app up past its idle time and `dynapm disable`
// keeps one stopped, its clients answered with unavailable_reply; both
// show in status and hold across a daemon restart, until unpin and enable.
func TestPinAndDisableSurviveADaemonRestart(t *testing.T) {
	t.Parallel()
	apps, state := t.TempDir(), stateDir(t)
	web, db := testutil.FreeAddr(t), testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), testutil.EchoApp(t, web, filepath.Join(t.TempDir(), "pid"), ""))
	testutil.WriteFile(t, filepath.Join(apps, "db.yaml"), testutil.EchoApp(t, db, filepath.Join(t.TempDir(), "pid"), "")+
		"unavailable_reply: \"-ERR disabled\\r\\n\"\n")
	d := startDaemon(t, apps, "-state", state)

	if out := dynapmOK(t, "pin", "web", "-for", "2h", "-state", state); !strings.HasPrefix(out, "web: ready (pinned until ") {
		t.Fatalf("pin said %q", out)
	}
	if !tryEcho(db, "up") {
		t.Fatal("db not served before disable")
	}
	if out := dynapmOK(t, "disable", "db", "-state", state); !strings.HasPrefix(out, "db: stopped (disabled)") {
		t.Fatalf("disable said %q", out)
	}
	if got, _ := request(t, db, "PING\r\n"); got != "-ERR disabled\r\n" {
		t.Fatalf("a client of the disabled app got %q, want its unavailable_reply", got)
	}
	// Several idle timeouts (300ms) with no connection: web stays up.
	<-time.After(time.Second)
	out := dynapmOK(t, "status", "-state", state)
	if !strings.Contains(out, "ready (pinned until ") || !strings.Contains(out, "stopped (disabled)") {
		t.Fatalf("status table:\n%s", out)
	}

	stopDaemon(t, d)
	d = startDaemon(t, apps, "-state", state)
	// The pinned app starts with the daemon, with no connection.
	testutil.Eventually(t, reloadWait, func() bool { return statusOf(t, state, "web")["state"] == "ready" }, "pinned web not started after the restart: %v", statusOf(t, state, "web"))
	if a := statusOf(t, state, "web"); a["pinned"] != true || a["pinned_until"] == nil {
		t.Fatalf("web after the restart: %v", a)
	}
	if a := statusOf(t, state, "db"); a["disabled"] != true || a["state"] != "stopped" {
		t.Fatalf("db after the restart: %v", a)
	}
	if got, _ := request(t, db, "PING\r\n"); got != "-ERR disabled\r\n" {
		t.Fatalf("a client of the disabled app after the restart got %q", got)
	}

	dynapmOK(t, "enable", "db", "-state", state)
	if !tryEcho(db, "again") {
		t.Fatal("db not served after enable")
	}
	dynapmOK(t, "unpin", "web", "-state", state)
	d.waitLog(t, `msg="app stopped"`, "app=web", "reason=idle")
	if a := statusOf(t, state, "web"); a["pinned"] != nil {
		t.Fatalf("web after unpin: %v", a)
	}
}
