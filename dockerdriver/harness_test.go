package dockerdriver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// harness is a Manager with the docker and swarm drivers.
type harness struct {
	t      *testing.T
	m      *lifecycle.Manager
	logs   *testutil.Buffer
	logger *slog.Logger
	dir    string
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	logs := &testutil.Buffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil))
	cfg.Logger = logger
	if cfg.ReconnectDelay == 0 {
		cfg.ReconnectDelay = 100 * time.Millisecond
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	execDriver := lifecycle.NewExecDriver(logger)
	containers, swarm := NewContainerDriver(cfg), NewSwarmDriver(cfg)
	m := lifecycle.NewManager(lifecycle.Config{
		StateDir: t.TempDir(),
		Logger:   logger,
		Driver:   execDriver,
		Drivers: map[string]lifecycle.Driver{
			appfile.DriverDocker: containers,
			appfile.DriverSwarm:  swarm,
		},
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 400 * time.Millisecond,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutting down manager: %v", err)
		}
		if err := execDriver.Close(); err != nil {
			t.Errorf("closing exec driver: %v", err)
		}
		_ = containers.Close()
		_ = swarm.Close()
	})
	return &harness{t: t, m: m, logs: logs, logger: logger, dir: t.TempDir()}
}

// spec parses app file "app.yaml" from yaml.
func (h *harness) spec(yaml string) *appfile.Spec {
	h.t.Helper()
	s, err := appfile.Parse(filepath.Join(h.dir, "app.yaml"), []byte("listen: '127.0.0.1:1'\n"+yaml))
	if err != nil {
		h.t.Fatalf("parsing app file: %v\n%s", err, yaml)
	}
	return s
}

func (h *harness) status() lifecycle.AppStatus {
	h.t.Helper()
	for _, st := range h.m.Status() {
		if st.Name == "app" {
			return st
		}
	}
	h.t.Fatal("app not in status")
	return lifecycle.AppStatus{}
}

func (h *harness) waitState(s lifecycle.State) lifecycle.AppStatus {
	h.t.Helper()
	var st lifecycle.AppStatus
	testutil.Eventually(h.t, dockerWait, func() bool {
		st = h.status()
		return st.State == s
	}, "app not %s: %+v", s, &st)
	return st
}

func (h *harness) wake() (netip.AddrPort, func()) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	up, release, err := h.m.Wake(ctx, "app")
	if err != nil {
		h.t.Fatalf("waking: %v", err)
	}
	h.t.Cleanup(release)
	return up, release
}

// echo sends msg through a connection to up and returns the answer.
func echo(t *testing.T, up netip.AddrPort, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", up.String(), dockerWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dockerWait))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading echo: %v", err)
	}
	return strings.TrimSpace(line)
}

// running asks the engine whether a container runs.
func running(t *testing.T, name string) bool {
	t.Helper()
	return docker(t, "inspect", "-f", "{{.State.Running}}", name) == "true"
}

// dockerSpec is the YAML of a docker app for containers on port.
func dockerSpec(port int, extra string, containers ...string) string {
	return fmt.Sprintf("driver: docker\ncontainer: [%s]\nupstream: '127.0.0.1:%d'\n%s", strings.Join(containers, ", "), port, extra)
}
