package dockerdriver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// testM runs the tests, then removes the images they built.
type testM struct{ m *testing.M }

func (t testM) Run() int {
	code := t.m.Run()
	if err := leaveSwarm(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	removeImages()
	return code
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(testM{m}) }

// dockerWait bounds each wait in these tests: starting a container takes
// well under a second, but a loaded machine deserves slack.
const dockerWait = 30 * time.Second

// engineCheck asks the engine for its API version once per test binary.
var engineCheck = sync.OnceValue(func() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("no docker command to set up containers: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := newClient(hostFromEnv())
	defer c.http.CloseIdleConnections()
	_, err := c.apiVersion(ctx)
	return err
})

// needEngine skips the test when no Docker Engine answers.
func needEngine(t *testing.T) {
	t.Helper()
	if err := engineCheck(); err != nil {
		t.Skipf("no Docker Engine answers at %s, skipping: %v", hostFromEnv(), err)
	}
}

// engineAPI returns the API version the engine speaks.
func engineAPI(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	c := newClient(hostFromEnv())
	defer c.http.CloseIdleConnections()
	v, err := c.apiVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// docker runs the docker command and returns its trimmed output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerOutput(args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// dockerOutput runs the docker command, bounded by dockerWait, and
// returns its trimmed output.
func dockerOutput(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Images built by this test binary, named after its pid so that parallel
// runs do not collide.
var (
	imageBase   = fmt.Sprintf("dynapm-test-testapp:%d", os.Getpid())
	imageHealth = fmt.Sprintf("dynapm-test-testapp-health:%d", os.Getpid())
	imagesMu    sync.Mutex
	imagesBuilt bool
)

// buildImages builds, once, an image FROM scratch holding a static build of
// internal/testapp (nothing is pulled: no registry is reachable), and one
// on top of it with a healthcheck that GETs /healthz on port 8080.
var buildImages = sync.OnceValue(func() error {
	dir, err := os.MkdirTemp("", "dynapm-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "testapp"), "github.com/dynapm/dynapm/internal/testapp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building a static testapp: %v\n%s", err, out)
	}
	files := map[string]string{
		"Dockerfile": "FROM scratch\nCOPY testapp /testapp\nENTRYPOINT [\"/testapp\"]\n",
		"Dockerfile.health": "FROM " + imageBase + "\n" +
			"HEALTHCHECK --interval=100ms --timeout=2s --retries=1 CMD [\"/testapp\", \"-mode\", \"get\", \"-target\", \"http://127.0.0.1:8080/healthz\"]\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	imagesMu.Lock()
	imagesBuilt = true
	imagesMu.Unlock()
	for _, b := range [][2]string{{imageBase, "Dockerfile"}, {imageHealth, "Dockerfile.health"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", b[0], "-f", filepath.Join(dir, b[1]), dir).CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("docker build %s: %v\n%s", b[0], err, out)
		}
	}
	return nil
})

// needImages skips without an engine and builds the test images.
func needImages(t *testing.T) {
	t.Helper()
	needEngine(t)
	if err := buildImages(); err != nil {
		t.Fatal(err)
	}
}

func removeImages() {
	imagesMu.Lock()
	defer imagesMu.Unlock()
	if !imagesBuilt {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	_ = exec.CommandContext(ctx, "docker", "rmi", "-f", imageHealth, imageBase).Run()
}

// containerSeq numbers the containers of this test binary.
var (
	containerMu  sync.Mutex
	containerSeq int
)

// createContainer creates (not starts) a container from image running
// testapp with args, port 8080 published on 127.0.0.1:hostPort, removed
// when the test ends. It returns the container's name.
func createContainer(t *testing.T, image string, hostPort int, args ...string) string {
	t.Helper()
	return createContainerWith(t, nil, image, hostPort, args...)
}

// createContainerWith is createContainer with more options of docker
// create (opts) before the image.
func createContainerWith(t *testing.T, opts []string, image string, hostPort int, args ...string) string {
	t.Helper()
	containerMu.Lock()
	containerSeq++
	name := fmt.Sprintf("dynapm-test-%d-%d", os.Getpid(), containerSeq)
	containerMu.Unlock()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "docker", "rm", "-f", name).CombinedOutput(); err != nil {
			t.Errorf("removing container %s: %v\n%s", name, err, out)
		}
	})
	createArgs := append([]string{"create", "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:8080", hostPort)}, opts...)
	createArgs = append(createArgs, image)
	docker(t, append(createArgs, args...)...)
	return name
}
