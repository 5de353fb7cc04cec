package dockerdriver

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/managertest"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// harness is a Manager with the docker and swarm drivers.
type harness struct {
	*managertest.Harness
	dir string
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := managertest.New(t, dockerWait, func(logger *slog.Logger) map[string]lifecycle.Driver {
		cfg.Logger = logger
		if cfg.ReconnectDelay == 0 {
			cfg.ReconnectDelay = 100 * time.Millisecond
		}
		if cfg.PollInterval == 0 {
			cfg.PollInterval = 20 * time.Millisecond
		}
		containers, swarm := NewContainerDriver(cfg), NewSwarmDriver(cfg)
		t.Cleanup(func() {
			_ = containers.Close()
			_ = swarm.Close()
		})
		return map[string]lifecycle.Driver{
			appfile.DriverDocker: containers,
			appfile.DriverSwarm:  swarm,
		}
	})
	return &harness{Harness: h, dir: t.TempDir()}
}

// spec parses app file "app.yaml" from yaml.
func (h *harness) spec(yaml string) *appfile.Spec {
	h.T.Helper()
	s, err := appfile.Parse(filepath.Join(h.dir, "app.yaml"), []byte("listen: '127.0.0.1:1'\n"+yaml))
	if err != nil {
		h.T.Fatalf("parsing app file: %v\n%s", err, yaml)
	}
	return s
}

// echo sends msg through a connection to up and returns the answer.
func echo(t *testing.T, up netip.AddrPort, msg string) string {
	t.Helper()
	return testutil.EchoLine(t, up.String(), msg, dockerWait)
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
