package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// The client commands, run as the real binary against a real daemon.

func TestCLIStatusStartStopRestartLogs(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	// A long idle timeout: the app stays up between the commands.
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"),
		strings.Replace(testutil.EchoApp(t, listen, pidfile, ""), "idle_timeout: 300ms", "idle_timeout: 10m", 1))
	startDaemon(t, apps, "-state", state)

	if a := statusOf(t, state, "echo"); a["state"] != "stopped" || a["pid"] != float64(0) {
		t.Fatalf("before any start: %v", a)
	}

	code, out, errOut := dynapm(t, "start", "echo", "-state", state)
	if code != 0 || !strings.HasPrefix(out, "echo: ready (pid ") {
		t.Fatalf("start: exit %d, out %q, err %q", code, out, errOut)
	}
	pid := testutil.ReadPidFile(t, pidfile)
	a := statusOf(t, state, "echo")
	if a["state"] != "ready" || a["pid"] != float64(pid) {
		t.Fatalf("after start: %v, want ready with pid %d", a, pid)
	}
	if got := testutil.EchoOnce(t, listen, "served"); got != "served" {
		t.Fatalf("echo = %q", got)
	}
	// The memory monitor's reading of the running process reaches status.
	testutil.Eventually(t, 20*time.Second, func() bool {
		rss, _ := statusOf(t, state, "echo")["rss_bytes"].(float64)
		return rss > 0
	}, "status -json of a running app never shows rss_bytes > 0: %v", statusOf(t, state, "echo"))

	code, out, errOut = dynapm(t, "status", "-state", state)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("status table:\n%s", out)
	}
	for _, want := range []string{"echo", "ready", fmt.Sprint(pid), listen} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("status row %q lacks %q", lines[1], want)
		}
	}

	code, out, errOut = dynapm(t, "restart", "-state", state, "echo")
	if code != 0 || !strings.HasPrefix(out, "echo: ready (pid ") {
		t.Fatalf("restart: exit %d, out %q, err %q", code, out, errOut)
	}
	if testutil.ProcessAlive(pid) {
		t.Errorf("old pid %d still alive after restart", pid)
	}
	if a := statusOf(t, state, "echo"); a["pid"] == float64(pid) || a["restarts"] != float64(1) {
		t.Errorf("after restart: %v", a)
	}

	code, out, errOut = dynapm(t, "stop", "echo", "-state", state)
	if code != 0 || !strings.HasPrefix(out, "echo: stopped") {
		t.Fatalf("stop: exit %d, out %q, err %q", code, out, errOut)
	}
	if a := statusOf(t, state, "echo"); a["state"] != "stopped" || a["pid"] != float64(0) {
		t.Fatalf("after stop: %v", a)
	}

	// Two starts so far; the log has a header for each.
	code, out, errOut = dynapm(t, "logs", "echo", "-n", "100", "-state", state)
	if code != 0 || strings.Count(out, "--- starting at ") != 2 {
		t.Fatalf("logs: exit %d, out %q, err %q", code, out, errOut)
	}

	code, _, errOut = dynapm(t, "start", "nope", "-state", state)
	if code != 1 || !strings.Contains(errOut, `unknown app "nope"`) {
		t.Fatalf("start nope: exit %d, err %q", code, errOut)
	}
}

// The scheduler's next wake reaches status, as JSON and in the table.
func TestCLIStatusShowsTheNextScheduledWake(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	testutil.WriteFile(t, filepath.Join(apps, "report.yaml"), fmt.Sprintf("listen: %q\ncommand: [%q]\nwake: [{cron: \"@every 3h\", keep: 1m}]\n",
		testutil.FreeAddr(t), testutil.TestApp(t)))
	testutil.WriteFile(t, filepath.Join(apps, "plain.yaml"), fmt.Sprintf("listen: %q\ncommand: [%q]\n", testutil.FreeAddr(t), testutil.TestApp(t)))
	before := time.Now()
	startDaemon(t, apps, "-state", state)

	a := statusOf(t, state, "report")
	next, err := time.Parse(time.RFC3339Nano, fmt.Sprint(a["next_wake"]))
	if err != nil {
		t.Fatalf("next_wake of an app with a wake schedule: %v (%v)", a["next_wake"], err)
	}
	// @every 3h from when the daemon loaded it.
	if next.Before(before.Add(3*time.Hour-time.Minute)) || next.After(time.Now().Add(3*time.Hour+time.Minute)) {
		t.Errorf("next_wake = %v, want about 3h from %v", next, before)
	}
	if p := statusOf(t, state, "plain"); p["next_wake"] != nil {
		t.Errorf("an app without a schedule has next_wake %v", p["next_wake"])
	}
	code, out, errOut := dynapm(t, "status", "-state", state)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	if !regexp.MustCompile(`(?m)^report .* in (2h5\dm|3h00m) `).MatchString(out) {
		t.Errorf("status table does not show report's next wake in about 3h:\n%s", out)
	}
}

func TestCLIStartReportsWhyAnAppFailed(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	testutil.WriteFile(t, filepath.Join(apps, "bad.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [%q, \"-crash\"]\nstart_timeout: 20s\n", testutil.FreeAddr(t), testutil.TestApp(t)))
	startDaemon(t, apps, "-state", state)
	code, out, errOut := dynapm(t, "start", "bad", "-state", state)
	if code != 1 || out != "" || !strings.Contains(errOut, "bad") || !strings.Contains(errOut, "exit") {
		t.Fatalf("start of a crashing app: exit %d, out %q, err %q", code, out, errOut)
	}
	// The program's own last words, which went through the log pipe.
	if !strings.Contains(errOut, "  testapp: crashing on purpose\n") {
		t.Fatalf("start of a crashing app does not show its log: %q", errOut)
	}
}

func TestCLILogsFollow(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), testutil.EchoApp(t, testutil.FreeAddr(t), filepath.Join(t.TempDir(), "pid"), ""))
	startDaemon(t, apps, "-state", state)

	follow := exec.Command(dynapmBin, "logs", "-f", "echo", "-state", state)
	out := &testutil.Buffer{}
	follow.Stdout, follow.Stderr = out, out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = follow.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = follow.Process.Kill()
		<-exited
	})

	if code, _, errOut := dynapm(t, "start", "echo", "-state", state); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(out.String(), "--- starting at ") },
		"logs -f did not show the start; output %q", out)

	// ^C ends it quietly.
	if err := follow.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("logs -f after SIGINT: %v; output %q", waitErr, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("logs -f did not exit on SIGINT")
	}
}

func TestCLISaysWhenTheDaemonIsNotRunning(t *testing.T) {
	state := stateDir(t)
	for _, args := range [][]string{
		{"status"}, {"status", "-json"}, {"start", "web"}, {"stop", "web"}, {"restart", "web"}, {"logs", "web"},
	} {
		code, _, errOut := dynapm(t, append(args, "-state", state)...)
		if code != 1 || !strings.Contains(errOut, "dynapm is not running (no socket at "+filepath.Join(state, "dynapm.sock")+"); start it with `dynapm run`") {
			t.Errorf("%v: exit %d, err %q", args, code, errOut)
		}
	}
}

func TestSecondDaemonOnTheSameStateDirIsRefused(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	startDaemon(t, apps, "-state", state)
	code, _, errOut := dynapm(t, "run", "-apps", apps, "-state", state)
	if code != 1 || !strings.Contains(errOut, "another dynapm is running") {
		t.Fatalf("second daemon: exit %d, err %q", code, errOut)
	}
	// The first still answers.
	if code, _, errOut := dynapm(t, "status", "-state", state); code != 0 {
		t.Fatalf("status after the refused second daemon: %s", errOut)
	}
}

func TestDaemonRefusesAStateDirOthersCanWrite(t *testing.T) {
	state := stateDir(t)
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := dynapm(t, "run", "-apps", t.TempDir(), "-state", state)
	if code != 1 || !strings.Contains(errOut, "chmod 700 "+state) {
		t.Fatalf("exit %d, err %q", code, errOut)
	}
}

func TestDaemonRefusesAStateDirTooLongForItsSocket(t *testing.T) {
	state := filepath.Join(stateDir(t), strings.Repeat("long-", 20))
	sock := filepath.Join(state, "dynapm.sock")
	code, _, errOut := dynapm(t, "run", "-apps", t.TempDir(), "-state", state)
	want := fmt.Sprintf("admin socket path %s is %d bytes, over the 107 bytes a Unix socket path may have; use a shorter state directory", sock, len(sock))
	if code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("run: exit %d, err %q; want exit 1 saying %q", code, errOut, want)
	}
	// The client commands say the same, not "connect: invalid argument".
	code, _, errOut = dynapm(t, "status", "-state", state)
	if code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("status: exit %d, err %q; want exit 1 saying %q", code, errOut, want)
	}
}

func TestMetricsAfterAWakeAndAnIdleStop(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen, metricsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), testutil.EchoApp(t, listen, filepath.Join(t.TempDir(), "pid"), ""))
	testutil.WriteFile(t, filepath.Join(apps, "bad.yaml"), "listen: 127.0.0.1:1\ncommand: [\"true\"]\nidle_timeout: soon\n")
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\n", metricsAddr))
	startDaemon(t, apps, "-state", state, "-config", config)
	if got := testutil.EchoOnce(t, listen, "wake up"); got != "wake up" {
		t.Fatalf("echo = %q", got)
	}
	var out string
	testutil.Eventually(t, 20*time.Second, func() bool {
		out = scrapeMetrics(t, metricsAddr)
		return strings.Contains(out, `dynapm_app_stops_total{app="echo",reason="idle"} 1`+"\n")
	}, "no idle stop in the metrics:\n%s", &out)
	for _, want := range []string{
		// bad.yaml is refused: an app in state error, as in status.
		"dynapm_apps 2",
		`dynapm_app_state{app="bad",state="error"} 1`,
		`dynapm_app_state{app="echo",state="stopped"} 1`,
		`dynapm_app_starts_total{app="echo",reason="connection"} 1`,
		`dynapm_app_cold_start_seconds_count{app="echo"} 1`,
		`dynapm_app_connections_total{app="echo"} 1`,
		`dynapm_app_bytes_total{app="echo",direction="in"} 7`,
		`dynapm_app_bytes_total{app="echo",direction="out"} 7`,
		`dynapm_app_open_connections{app="echo"} 0`,
		`dynapm_app_held_connections{app="echo"} 0`,
		"dynapm_reload_errors_total 1",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", out)
	}
}

// notifyingDaemon runs a daemon on apps under a NOTIFY_SOCKET, as systemd
// runs a Type=notify service, and returns it with a function that reads
// the next notification.
func notifyingDaemon(t *testing.T, apps, state string) (*exec.Cmd, func() string) {
	t.Helper()
	sockDir := stateDir(t)
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(sockDir, "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { notify.Close() })
	cmd := exec.Command(dynapmBin, "run", "-apps", apps, "-state", state)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(sockDir, "notify"))
	out := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	read := func() string {
		t.Helper()
		if err := notify.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := notify.Read(buf)
		if err != nil {
			t.Fatalf("reading notification: %v; daemon output:\n%s", err, out)
		}
		return string(buf[:n])
	}
	return cmd, read
}

func TestDaemonNotifiesSystemd(t *testing.T) {
	cmd, read := notifyingDaemon(t, t.TempDir(), stateDir(t))
	if msg := read(); !strings.HasPrefix(msg, "READY=1\n") {
		t.Fatalf("first notification = %q", msg)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if msg := read(); msg != "STOPPING=1" {
		t.Fatalf("notification on SIGTERM = %q", msg)
	}
}

// Only the daemon talks to systemd: an app that saw NOTIFY_SOCKET could
// report the service ready or stopping behind the daemon's back.
func TestAppsDoNotInheritTheNotifySocket(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	testutil.WriteFile(t, filepath.Join(apps, "db.yaml"), fmt.Sprintf("listen: %q\ncommand: [%q, \"-print-env\", \"NOTIFY_SOCKET\"]\nmode: persistent\n",
		testutil.FreeAddr(t), testutil.TestApp(t)))
	_, read := notifyingDaemon(t, apps, state)
	if msg := read(); !strings.HasPrefix(msg, "READY=1\n") {
		t.Fatalf("first notification = %q", msg)
	}
	logFile := filepath.Join(state, "logs", "db.log")
	var log []byte
	testutil.Eventually(t, 20*time.Second, func() bool {
		log, _ = os.ReadFile(logFile)
		return bytes.Contains(log, []byte("NOTIFY_SOCKET="))
	}, "the app did not print its environment; %s: %q", logFile, &log)
	if !bytes.Contains(log, []byte("NOTIFY_SOCKET=\n")) {
		t.Fatalf("the app inherited the notify socket: %q", log)
	}
}

func TestAppLogsRotate(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, "app_logs: {max_size: 1MiB, keep: 1}\n")
	// 3 MiB of output before listening: three rotations, one old file kept.
	testutil.WriteFile(t, filepath.Join(apps, "chatty.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: \"yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 3145728; echo; echo last line; exec %s -mode echo\"\nidle_timeout: 10m\nstart_timeout: 30s\n",
		testutil.FreeAddr(t), testutil.TestApp(t)))
	startDaemon(t, apps, "-state", state, "-config", config)
	if code, _, errOut := dynapm(t, "start", "chatty", "-state", state); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	logDir := filepath.Join(state, "logs")
	var backups []string
	testutil.Eventually(t, 20*time.Second, func() bool {
		backups, _ = filepath.Glob(filepath.Join(logDir, "chatty-*.log"))
		cur, err := os.ReadFile(filepath.Join(logDir, "chatty.log"))
		return err == nil && len(backups) == 1 && strings.Contains(string(cur), "\nlast line\n")
	}, "want chatty.log with the last line and one rotated file; have %v", &backups)
	st, err := os.Stat(filepath.Join(logDir, "chatty.log"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 1<<20 {
		t.Errorf("chatty.log is %d bytes, over max_size", st.Size())
	}
	// The program's own line follows ours ("testapp: listening ...").
	code, out, _ := dynapm(t, "logs", "chatty", "-n", "2", "-state", state)
	if code != 0 || !strings.HasPrefix(out, "last line\n") || strings.Count(out, "\n") != 2 {
		t.Errorf("logs -n 2: exit %d, %q", code, out)
	}
}

func TestMetricsDropARemovedApp(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	gone, kept, metricsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	// gone idles long enough to be running when its file is removed: its
	// stop (reason "removed") comes after the reload.
	goneFile := filepath.Join(apps, "gone.yaml")
	testutil.WriteFile(t, goneFile, strings.Replace(testutil.EchoApp(t, gone, filepath.Join(t.TempDir(), "pid"), ""),
		"idle_timeout: 300ms", "idle_timeout: 5m", 1))
	testutil.WriteFile(t, filepath.Join(apps, "kept.yaml"), testutil.EchoApp(t, kept, filepath.Join(t.TempDir(), "pid"), ""))
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\n", metricsAddr))
	startDaemon(t, apps, "-state", state, "-config", config)
	for _, addr := range []string{gone, kept} {
		if got := testutil.EchoOnce(t, addr, "hi"); got != "hi" {
			t.Fatalf("echo via %s = %q", addr, got)
		}
	}
	var out string
	testutil.Eventually(t, 20*time.Second, func() bool {
		out = scrapeMetrics(t, metricsAddr)
		return strings.Contains(out, `dynapm_app_connections_total{app="gone"} 1`+"\n")
	}, "no connection of gone in the metrics:\n%s", &out)

	if err := os.Remove(goneFile); err != nil {
		t.Fatal(err)
	}
	// Once the manager has let the app go (its state gauge is gone), no
	// series of it is left, not even its stop.
	testutil.Eventually(t, 20*time.Second, func() bool {
		out = scrapeMetrics(t, metricsAddr)
		return strings.Contains(out, "dynapm_apps 1\n") && !strings.Contains(out, `dynapm_app_state{app="gone"`)
	}, "removed app still in the status:\n%s", &out)
	if strings.Contains(out, `app="gone"`) {
		t.Errorf("removed app still has series:\n%s", out)
	}
	if !strings.Contains(out, `dynapm_app_connections_total{app="kept"} 1`+"\n") {
		t.Errorf("the other app lost its series:\n%s", out)
	}
}

// The starts and stops are counted under a fixed set of reason labels, not
// the detailed reasons of the log: a persistent app starts at boot, is
// stopped for memory (reason "memory", logged as "memory: over budget"), a
// restart and a stop from the CLI are "manual", an exit on its own "crash".
func TestMetricsCountStartsAndStopsByReasonLabel(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listenP, listenM, listenC, metricsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	long := func(s string) string { return strings.Replace(s, "idle_timeout: 300ms", "idle_timeout: 10m", 1) }
	testutil.WriteFile(t, filepath.Join(apps, "p.yaml"),
		long(testutil.EchoApp(t, listenP, filepath.Join(t.TempDir(), "pid"), ", \"-alloc\", \"64\""))+"mode: persistent\n")
	testutil.WriteFile(t, filepath.Join(apps, "m.yaml"), long(testutil.EchoApp(t, listenM, filepath.Join(t.TempDir(), "pid"), ", \"-alloc\", \"64\"")))
	testutil.WriteFile(t, filepath.Join(apps, "c.yaml"), long(testutil.EchoApp(t, listenC, filepath.Join(t.TempDir(), "pid"), ", \"-crash-after\", \"1s\"")))
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	// One 64 MiB app fits, two do not.
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\nmemory:\n  budget: 110MiB\n  interval: 100ms\n", metricsAddr))
	d := startDaemon(t, apps, "-state", state, "-config", config)

	var out string
	waitMetric := func(line string) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, func() bool {
			out = scrapeMetrics(t, metricsAddr)
			return strings.Contains(out, line+"\n")
		}, "metrics lack %q:\n%s", line, &out)
	}
	waitMetric(`dynapm_app_starts_total{app="p",reason="boot"} 1`)
	// c crashes a second after it listens; awaited before memory runs
	// short, or a loaded machine may pick c to stop before it crashes.
	if code, _, errOut := dynapm(t, "start", "c", "-state", state); code != 0 {
		t.Fatalf("start c: exit %d: %s", code, errOut)
	}
	waitMetric(`dynapm_app_stops_total{app="c",reason="crash"} 1`)
	if got := testutil.EchoOnce(t, listenM, "m"); got != "m" { // now over budget: p, the older, is stopped
		t.Fatalf("echo m = %q", got)
	}
	waitMetric(`dynapm_app_stops_total{app="p",reason="memory"} 1`)
	if !strings.Contains(d.out.String(), `reason="memory: over budget"`) {
		t.Errorf("the log lacks the detailed reason of the memory stop")
	}
	for _, cmd := range []string{"restart", "stop"} {
		if code, _, errOut := dynapm(t, cmd, "m", "-state", state); code != 0 {
			t.Fatalf("%s m: exit %d: %s", cmd, code, errOut)
		}
	}
	waitMetric(`dynapm_app_stops_total{app="m",reason="manual"} 2`)
	for _, want := range []string{
		`dynapm_app_starts_total{app="m",reason="connection"} 1`,
		`dynapm_app_starts_total{app="m",reason="manual"} 1`,
		`dynapm_app_stops_total{app="m",reason="manual"} 2`,
		`dynapm_app_starts_total{app="c",reason="manual"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	known := "connection cron manual boot reload crash memory scale adopt outside other idle removed failed shutdown"
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, "dynapm_app_starts_total{") && !strings.HasPrefix(line, "dynapm_app_stops_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `reason="`)
		reason, _, _ := strings.Cut(rest, `"`)
		if !slices.Contains(strings.Fields(known), reason) {
			t.Errorf("label reason=%q is not in the fixed set: %s", reason, line)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", out)
	}
}

func TestDaemonNamesTheMetricsSettingItCannotListenOn(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, fmt.Sprintf("metrics: %q\n", busy.Addr().String()))
	code, _, errOut := dynapm(t, "run", "-apps", t.TempDir(), "-state", stateDir(t), "-config", config)
	want := fmt.Sprintf("listening for metrics on %s (setting `metrics` in %s): ", busy.Addr(), config)
	if code == 0 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, errOut, want)
	}
}

// wakeAndIdle wakes the echo app on listen and waits until it has stopped
// for idleness, so that the daemon has logged app lines of both kinds.
func wakeAndIdle(t *testing.T, d *runningDaemon, listen string) {
	t.Helper()
	if got := testutil.EchoOnce(t, listen, "log me"); got != "log me" {
		t.Fatalf("echo = %q", got)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return strings.Count(d.out.String(), "app stopped") == 1 },
		"no idle stop logged:\n%s", d.out)
}

func TestDaemonLogsJSONLinesWhenAsked(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), testutil.EchoApp(t, listen, filepath.Join(t.TempDir(), "pid"), ""))
	testutil.WriteFile(t, filepath.Join(apps, "bad.yaml"), "listen: 127.0.0.1:1\ncommand: [\"true\"]\nidle_timeout: soon\n")
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, "log: {format: json}\n")
	d := startDaemon(t, apps, "-config", config)
	wakeAndIdle(t, d, listen)

	msgs := map[string]map[string]any{}
	for line := range strings.Lines(d.out.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("daemon output line is not JSON (%v): %q", err, line)
		}
		msg, _ := rec["msg"].(string)
		level, _ := rec["level"].(string)
		if msg == "" || level == "" {
			t.Errorf("line without msg or level: %q", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"])); err != nil {
			t.Errorf("line without a time: %q", line)
		}
		// About an app: it is named, or the file that is not one yet.
		if strings.HasPrefix(msg, "app ") && rec["app"] == nil && rec["file"] == nil {
			t.Errorf("app line names no app: %q", line)
		}
		msgs[msg] = rec
	}
	for _, msg := range []string{"app started", "app stopped"} {
		if rec := msgs[msg]; rec == nil || rec["app"] != "echo" || rec["reason"] == nil {
			t.Errorf("%q line: %v, want app echo with a reason", msg, rec)
		}
	}
	if rec := msgs["app file not applied; it is not served"]; rec == nil || rec["level"] != "ERROR" ||
		!strings.HasSuffix(fmt.Sprint(rec["file"]), "bad.yaml") || !strings.Contains(fmt.Sprint(rec["err"]), "idle_timeout") {
		t.Errorf("the bad file's line: %v, want an ERROR naming bad.yaml and idle_timeout", rec)
	}
}

func TestDaemonLogsTextByDefault(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), testutil.EchoApp(t, listen, filepath.Join(t.TempDir(), "pid"), ""))
	d := startDaemon(t, apps)
	wakeAndIdle(t, d, listen)

	line := regexp.MustCompile(`^time=\S+ level=(DEBUG|INFO|WARN|ERROR) msg=("[^"]*"|\S+)( |$)`)
	for l := range strings.Lines(d.out.String()) {
		if !line.MatchString(l) {
			t.Errorf("daemon output line is not a slog text line: %q", l)
		}
	}
	for _, msg := range []string{`msg="app started" app=echo reason=connection`, `msg="app stopped" app=echo reason=idle`} {
		if !strings.Contains(d.out.String(), msg) {
			t.Errorf("daemon output lacks %s:\n%s", msg, d.out)
		}
	}
}

func TestDaemonRunsTheEventLoopsTheSettingsAsk(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), echoAppOn(t, []string{listen}, filepath.Join(t.TempDir(), "pid"), ""))
	config := filepath.Join(t.TempDir(), "dynapm.yaml")
	testutil.WriteFile(t, config, "event_loops: 3\n")
	d := startDaemon(t, apps, "-config", config)
	if !strings.Contains(d.out.String(), "event_loops=3") {
		t.Fatalf("ready line does not say event_loops=3:\n%s", d.out)
	}
	// Connections held open at once land on different loops (accepted by
	// whichever is idle, or dealt in turn after the wake); each still gets
	// its own bytes back.
	conns := make([]net.Conn, 8)
	for i := range conns {
		c, err := net.DialTimeout("tcp", listen, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		conns[i] = c
	}
	for i, c := range conns {
		msg := fmt.Sprintf("connection %d", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("connection %d: echo %q, %v", i, got, err)
		}
	}
}

// A client command pointed at a state directory where no daemon runs says
// where it looked, why there, and how to point it elsewhere.
func TestCLINotRunningSaysWhereItLookedAndHowToLookElsewhere(t *testing.T) {
	state := stateDir(t)
	for _, c := range []struct {
		env  string
		args []string
		from string
	}{
		{"", []string{"-state", state}, "given by -state"},
		{state, nil, "from DYNAPM_STATE"},
	} {
		cmd := exec.Command(dynapmBin, append([]string{"status"}, c.args...)...)
		cmd.Env = append(os.Environ(), "DYNAPM_STATE="+c.env)
		out, err := cmd.CombinedOutput()
		want := "looked in the state directory " + state + " (" + c.from + "); for a daemon with another one, " +
			"give the same -state DIR or -config FILE as the daemon has, or set DYNAPM_STATE=DIR"
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("status %v with DYNAPM_STATE=%q: %v, output %q; want %q", c.args, c.env, err, out, want)
		}
	}
	// DYNAPM_STATE reaches a running daemon too.
	apps := t.TempDir()
	startDaemon(t, apps, "-state", state)
	cmd := exec.Command(dynapmBin, "status")
	cmd.Env = append(os.Environ(), "DYNAPM_STATE="+state)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "no apps configured") {
		t.Errorf("status with DYNAPM_STATE of a running daemon: %v, %q", err, out)
	}
}

// dynapm version and -version print the module version and the VCS
// revision the toolchain recorded in the binary.
func TestVersionPrintsTheBuildInfo(t *testing.T) {
	info, err := exec.Command("go", "version", "-m", dynapmBin).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for line := range strings.Lines(string(info)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			want = append(want, "dynapm "+f[2])
		case len(f) >= 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			want = append(want, "revision "+strings.TrimPrefix(f[1], "vcs.revision="))
		}
	}
	if len(want) == 0 {
		t.Fatalf("go version -m shows no module version:\n%s", info)
	}
	for _, args := range [][]string{{"version"}, {"-version"}} {
		code, out, _ := dynapm(t, args...)
		for _, w := range want {
			if code != 0 || !strings.HasPrefix(out, "dynapm ") || !strings.Contains(out, w) {
				t.Errorf("dynapm %v: exit %d, %q; want it to hold %q", args, code, out, w)
			}
		}
	}
}
