package dockerdriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/managertest"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
	"github.com/dynapm/dynapm/memory"
)

func TestDockerWakeStartsContainerAndIdleStopsIt(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "idle_timeout: 500ms\nstop_timeout: 2s\n", name))})
	if running(t, name) {
		t.Fatal("container runs before any wake")
	}
	up, release := h.Wake()
	if got := echo(t, up, "through docker"); got != "through docker" {
		t.Fatalf("echo = %q", got)
	}
	if !running(t, name) {
		t.Fatal("container not running after the wake")
	}
	if st := h.Status(); st.Pid == 0 {
		t.Errorf("Pid = 0, want the container's main process")
	}
	release()
	h.WaitState(lifecycle.Stopped)
	if running(t, name) {
		t.Error("container still runs after the idle stop")
	}
}

func TestDockerStoppedOutsideIsNoticed(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "", name))})
	_, release := h.Wake()
	release()
	docker(t, "stop", "-t", "5", name)
	st := h.WaitState(lifecycle.Stopped)
	if st.LastError != "" {
		t.Errorf("LastError = %q, want none: an outside stop is not a crash", st.LastError)
	}
	if !strings.Contains(h.Logs.String(), "app stopped from outside") {
		t.Errorf("no outside stop in the log:\n%s", h.Logs)
	}
	up, _ := h.Wake()
	if got := echo(t, up, "again"); got != "again" {
		t.Fatalf("echo after the restart = %q", got)
	}
}

func TestDockerStopKillsAfterStopTimeout(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	// The program ignores SIGTERM: only the engine's SIGKILL, due
	// stop_timeout after the stop signal, ends it.
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080", "-ignore-term")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "stop_timeout: 1s\n", name))})
	_, release := h.Wake()
	release()
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	began := time.Now()
	if err := h.M.Stop(ctx, "app", "manual"); err != nil {
		t.Fatal(err)
	}
	if running(t, name) {
		t.Fatal("container still runs after the stop")
	}
	if code := docker(t, "inspect", "-f", "{{.State.ExitCode}}", name); code != "137" {
		t.Errorf("exit code = %s, want 137: the program ignores SIGTERM, only SIGKILL ends it", code)
	}
	// The engine's kill events say when each signal went: SIGKILL must
	// follow SIGTERM by stop_timeout. (The stop's own duration proves
	// little: tearing a container down takes about a second anyway.)
	sent := killSignals(t, name, began)
	term, kill := sent["15"], sent["9"]
	if term.IsZero() || kill.IsZero() {
		t.Fatalf("kill events = %v, want SIGTERM (15) then SIGKILL (9)", sent)
	}
	if gap := kill.Sub(term); gap < 900*time.Millisecond {
		t.Errorf("SIGKILL came %v after SIGTERM, want about stop_timeout (1s) at least", gap)
	}
}

// killSignals returns when the engine first sent each signal (by number)
// to container name since the given time, from its kill events.
func killSignals(t *testing.T, name string, since time.Time) map[string]time.Time {
	t.Helper()
	out := docker(t, "events", "--since", sinceNano(since.UnixNano()), "--until", sinceNano(time.Now().UnixNano()),
		"--filter", "container="+name, "--filter", "event=kill", "--format", "{{.TimeNano}} {{.Actor.Attributes.signal}}")
	sent := make(map[string]time.Time)
	for _, line := range strings.Split(out, "\n") {
		ns, sig, ok := strings.Cut(line, " ")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil {
			continue
		}
		if _, seen := sent[sig]; !seen {
			sent[sig] = time.Unix(0, n)
		}
	}
	return sent
}

// stopWith wakes app, stops it and returns the container's exit code and
// the signals the engine sent it.
func stopWith(t *testing.T, h *harness, name string) (string, map[string]time.Time) {
	t.Helper()
	_, release := h.Wake()
	release()
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	began := time.Now()
	if err := h.M.Stop(ctx, "app", "manual"); err != nil {
		t.Fatal(err)
	}
	return docker(t, "inspect", "-f", "{{.State.ExitCode}}", name), killSignals(t, name, began)
}

// testapp exits 0 on SIGTERM; on SIGQUIT Go's runtime makes it exit 2.
const quitExitCode = "2"

func TestDockerStopSignalIsSent(t *testing.T) {
	needImages(t)
	if v := engineAPI(t); !apiAtLeast(v, signalAPI) {
		t.Skipf("this engine speaks API %s: stopping with a chosen signal needs %s (TestDockerStopSignalOnOldEngineIsRefused runs instead)", v, signalAPI)
	}
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "stop_signal: SIGQUIT\nstop_timeout: 5s\n", name))})
	code, sent := stopWith(t, h, name)
	if code != quitExitCode {
		t.Errorf("exit code = %s, want %s (SIGQUIT); signals sent: %v", code, quitExitCode, sent)
	}
	if _, ok := sent["3"]; !ok {
		t.Errorf("signals sent = %v, want SIGQUIT (3)", sent)
	}
}

func TestDockerStopSignalOnOldEngineIsRefused(t *testing.T) {
	needImages(t)
	v := engineAPI(t)
	if apiAtLeast(v, signalAPI) {
		t.Skipf("this engine speaks API %s: it takes a stop signal (TestDockerStopSignalIsSent runs instead)", v)
	}
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "stop_signal: SIGQUIT\n", name))})
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	err := h.M.Start(ctx, "app", "manual")
	if !errors.Is(err, lifecycle.ErrStartFailed) {
		t.Fatalf("Start = %v, want a failed start", err)
	}
	for _, want := range []string{`starting app "app"`, "cannot stop a container with a chosen signal", "API " + v, "stop_signal quit (3) needs " + signalAPI,
		"docker create --stop-signal", "upgrade Docker"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start = %v, want it to contain %q", err, want)
		}
	}
	if running(t, name) {
		t.Error("the container was started although it could not be stopped as the app file says")
	}
}

func TestDockerDefaultStopSignalIsTheContainersOwn(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainerWith(t, []string{"--stop-signal", "SIGQUIT"}, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "", name))})
	if code, sent := stopWith(t, h, name); code != quitExitCode {
		t.Errorf("exit code = %s, want %s: the container's own SIGQUIT, not SIGTERM; signals sent: %v", code, quitExitCode, sent)
	}
}

func TestDockerCrashIsNotAnOutsideStop(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080", "-crash-after", "1s")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "", name))})
	_, release := h.Wake()
	release()
	var st lifecycle.AppStatus
	testutil.Eventually(t, dockerWait, func() bool {
		st = h.Status()
		return st.LastError != ""
	}, "the crash was not recorded: %+v", &st)
	if want := `exited: container "` + name + `": exit code 3`; st.LastError != want {
		t.Errorf("LastError = %q, want %q: the container and its exit code (the app is the status row's)", st.LastError, want)
	}
}

func TestDockerContainersStartInOrderAndStopInReverse(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	back := createContainer(t, imageBase, testutil.FreePort(t), "-mode", "echo", "-listen", "0.0.0.0:8080")
	front := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "", back, front))})
	up, release := h.Wake()
	if got := echo(t, up, "x"); got != "x" {
		t.Fatalf("echo = %q", got)
	}
	release()
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	if err := h.M.Stop(ctx, "app", "manual"); err != nil {
		t.Fatal(err)
	}
	times := func(field string) (time.Time, time.Time) {
		parse := func(name string) time.Time {
			v, err := time.Parse(time.RFC3339Nano, docker(t, "inspect", "-f", "{{.State."+field+"}}", name))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		return parse(back), parse(front)
	}
	if b, f := times("StartedAt"); !b.Before(f) {
		t.Errorf("started %s at %v, %s at %v: want the first listed first", back, b, front, f)
	}
	if b, f := times("FinishedAt"); !f.Before(b) {
		t.Errorf("stopped %s at %v, %s at %v: want the last listed first", back, b, front, f)
	}
}

func TestDockerHealthcheckGatesReadiness(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	// The port accepts at once but /healthz answers 503 for 2s: a TCP probe
	// alone would call it ready too early.
	name := createContainer(t, imageHealth, port, "-mode", "http", "-listen", "0.0.0.0:8080", "-ready-delay", "2s")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "", name))})
	up, _ := h.Wake()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: dockerWait}
	resp, err := client.Get("http://" + up.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %s %q right after the wake: readiness did not wait for the healthcheck", resp.Status, body)
	}
	if got := docker(t, "inspect", "-f", "{{.State.Health.Status}}", name); got != "healthy" {
		t.Errorf("health = %q", got)
	}
}

func TestDockerMemoryFromEngineStats(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080", "-alloc", "64")
	d := NewContainerDriver(Config{})
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	h := newHarness(t, Config{})
	proc, err := d.Start(ctx, lifecycle.StartRequest{Spec: h.spec(dockerSpec(port, "", name))})
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Stop(syscall.SIGTERM, 2*time.Second)
	mr, ok := proc.(lifecycle.MemoryReporter)
	if !ok {
		t.Fatal("a container process does not report memory")
	}
	const want = 64 << 20
	var got uint64
	testutil.Eventually(t, dockerWait, func() bool {
		got, err = mr.MemoryBytes(ctx)
		return err == nil && got >= want
	}, "memory = %d (err %v), want at least %d (testapp touches 64 MiB)", &got, &err, want)
	if got > 1<<30 {
		t.Errorf("memory = %d, implausibly large", got)
	}
	if err := proc.Stop(syscall.SIGTERM, 2*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	select {
	case <-proc.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if proc.Err() != nil {
		t.Errorf("Err after Stop = %v, want nil", proc.Err())
	}
}

// plentyOfMemory reports a machine with memory to spare, so that only the
// budget decides.
type plentyOfMemory struct{}

func (plentyOfMemory) Available() (int64, int64, error) { return 1 << 40, 1 << 41, nil }

// The memory policy counts a container app by the engine's figure: over a
// budget, the app is stopped like an exec app, and the stop names that
// figure.
func TestDockerBudgetStopsContainerApp(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080", "-alloc", "64")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "stop_timeout: 2s\n", name))})
	_, release := h.Wake()
	release()
	mon := memory.NewMonitor(memory.MonitorConfig{
		Policy: memory.Policy{Budget: 32 << 20},
		Reader: plentyOfMemory{},
		Apps:   h.M,
		Logger: h.Logger,
	})
	stops := mon.Check(context.Background())
	if len(stops) != 1 || stops[0].App != managertest.App || stops[0].RSS < 64<<20 {
		t.Fatalf("memory check stopped %+v, want the app with at least the 64 MiB its container touched", stops)
	}
	h.WaitState(lifecycle.Stopped)
	if running(t, name) {
		t.Error("container still runs after the memory stop")
	}
}

func TestDockerAdoptsRunningContainer(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	docker(t, "start", name)
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "idle_timeout: 300ms\n", name))})
	h.WaitState(lifecycle.Ready)
	if !strings.Contains(h.Logs.String(), "reason=adopt") {
		t.Errorf("no adoption in the log:\n%s", h.Logs)
	}
	// Adopted, it is stopped when idle like any other.
	h.WaitState(lifecycle.Stopped)
	if running(t, name) {
		t.Error("adopted container still runs after the idle stop")
	}
}

func TestDockerStartedOutsideIsAdoptedAndIdleStopped(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "idle_timeout: 300ms\n", name))})
	_, release := h.Wake()
	release()
	h.WaitState(lifecycle.Stopped)
	if running(t, name) {
		t.Fatal("container still runs after the idle stop")
	}
	docker(t, "start", name)
	adopted := func() bool {
		logs := h.Logs.String()
		return strings.Contains(logs, `msg="app started" app=app reason=adopt`)
	}
	testutil.Eventually(t, dockerWait, adopted, "the container started outside was not adopted:\n%s", h.Logs)
	// Adopted, it is stopped when idle like any other.
	var st lifecycle.AppStatus
	testutil.Eventually(t, dockerWait, func() bool {
		st = h.Status()
		return st.State == lifecycle.Stopped && !running(t, name)
	}, "adopted container not idle-stopped: %+v", &st)
	if st.Starts != 2 {
		t.Errorf("Starts = %d, want 2: the wake, then the adoption (DynaPM's own starts are not adopted)", st.Starts)
	}
}

// TestDockerProcessErrorsNameTheContainer: what a container process
// reports after an outside kill (its Err, its Ready) names it; the caller
// names the app.
func TestDockerProcessErrorsNameTheContainer(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080")
	d := NewContainerDriver(Config{})
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	h := newHarness(t, Config{})
	proc, err := d.Start(ctx, lifecycle.StartRequest{Spec: h.spec(dockerSpec(port, "", name)), Upstream: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Stop(syscall.SIGTERM, 2*time.Second)
	docker(t, "kill", name)
	select {
	case <-proc.Done():
	case <-ctx.Done():
		t.Fatal("the outside kill was not noticed")
	}
	want := `container "` + name + `" was stopped`
	if err := proc.Err(); !errors.Is(err, lifecycle.ErrStoppedOutside) || !strings.Contains(err.Error(), want) {
		t.Errorf("Err = %v, want %q wrapping ErrStoppedOutside", err, want)
	}
	_, err = proc.(lifecycle.ReadyChecker).Ready(ctx)
	if want := `container "` + name + `" is exited`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Ready = %v, want %q", err, want)
	}
}

func TestDockerMissingContainerSaysSo(t *testing.T) {
	needEngine(t)
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(testutil.FreePort(t), "", "dynapm-test-no-such-container"))})
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	err := h.M.Start(ctx, "app", "manual")
	if !errors.Is(err, lifecycle.ErrStartFailed) || !strings.Contains(err.Error(), `no container named "dynapm-test-no-such-container"`) ||
		!strings.Contains(err.Error(), "docker create") {
		t.Fatalf("Start = %v, want a failed start naming the missing container and how to create it", err)
	}
}

// TestDockerUnreachableEngineSaysSo needs no engine: it names a socket
// nobody listens on.
func TestDockerUnreachableEngineSaysSo(t *testing.T) {
	h := newHarness(t, Config{Host: "unix://" + t.TempDir() + "/docker.sock"})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(testutil.FreePort(t), "", "web"))})
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	err := h.M.Start(ctx, "app", "manual")
	for _, want := range []string{`starting app "app"`, "cannot reach the Docker Engine at unix://", "is dockerd running? is DOCKER_HOST right?"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Start = %v, want it to contain %q", err, want)
		}
	}
}

func TestDockerHostForms(t *testing.T) {
	cases := []struct{ host, network, address, err string }{
		{"unix:///var/run/docker.sock", "unix", "/var/run/docker.sock", ""},
		{"tcp://127.0.0.1:2375", "tcp", "127.0.0.1:2375", ""},
		{"ssh://me@host", "", "", "expected unix:///path/to/docker.sock or tcp://host:port"},
		{"unix://", "", "", "expected unix://"},
	}
	for _, c := range cases {
		cl := newClient(c.host)
		if c.err != "" {
			_, err := cl.apiVersion(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, errUnreachable) {
				t.Errorf("%s: err = %v, want %q", c.host, err, c.err)
			}
			continue
		}
		if cl.err != nil || cl.network != c.network || cl.address != c.address {
			t.Errorf("%s: %s %s (err %v), want %s %s", c.host, cl.network, cl.address, cl.err, c.network, c.address)
		}
	}
}

func TestDockerPermissionDeniedSaysWhatToDo(t *testing.T) {
	c := newClient("unix:///x/docker.sock")
	err := explain("container", "db", c.classify(&netOpError{syscall.EACCES}))
	for _, want := range []string{"permission denied on the Docker socket /x/docker.sock", "docker group"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want %q", err, want)
		}
	}
}

// netOpError stands for the dial error the kernel gives on a socket the
// daemon may not open (a root test cannot be refused for real).
type netOpError struct{ err error }

func (e *netOpError) Error() string { return "dial unix /x/docker.sock: " + e.err.Error() }
func (e *netOpError) Unwrap() error { return e.err }

func TestDockerReadyWaitsForTheProgramBehindDockerProxy(t *testing.T) {
	needImages(t)
	port := testutil.FreePort(t)
	// The published port accepts (docker-proxy) as soon as the container
	// runs; the program itself listens only after 1.5s.
	name := createContainer(t, imageBase, port, "-mode", "echo", "-listen", "0.0.0.0:8080", "-delay", "1500ms")
	h := newHarness(t, Config{})
	h.M.Apply([]*appfile.Spec{h.spec(dockerSpec(port, "", name))})
	up, _ := h.Wake()
	if got := echo(t, up, "behind the proxy"); got != "behind the proxy" {
		t.Fatalf("echo = %q", got)
	}
}
