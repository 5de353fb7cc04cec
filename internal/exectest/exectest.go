// Package exectest runs the test suites whose programs the exec driver
// starts (the driver's own and lifecycle's) a second time, with the
// programs started through the spawner helper, as the daemon starts them
// once it has many apps. The test binary is its own helper, as the dynapm
// binary is.
//
// It takes the driver as an interface, so that the exec driver's own
// tests can use it without an import cycle.
package exectest

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/dynapm/dynapm/driver/exec/spawner"
	"github.com/dynapm/dynapm/internal/testutil"
)

// spawnerEnv set makes a suite start its programs through the spawner
// helper; Main sets it for the second run.
const spawnerEnv = "DYNAPM_TEST_SPAWNER"

// WithSpawner reports whether this run of the suite starts programs
// through the spawner helper.
func WithSpawner() bool { return os.Getenv(spawnerEnv) != "" }

// Main is the TestMain of such a suite, which pkg names in the banner of
// its second run. Started as the spawner helper, the binary serves as
// one. Otherwise Main runs the suite, checks that no goroutine leaked
// and, when both passed, runs the suite again with the spawner helper
// (unless this is that second run). It returns the exit code.
func Main(m *testing.M, pkg string) int {
	if len(os.Args) > 1 && os.Args[1] == spawner.HelperArg {
		return spawner.Main()
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak (spawner %v): %v\n", WithSpawner(), err)
			code = 1
		}
	}
	if code == 0 && !WithSpawner() {
		if err := testutil.RerunSuite("=== "+pkg+": the same tests with programs started through the spawner helper", spawnerEnv+"=1"); err != nil {
			fmt.Fprintf(os.Stderr, "suite with the spawner: %v\n", err)
			code = 1
		}
	}
	return code
}

// Driver is what this package needs of an exec driver.
type Driver interface {
	UseSpawner(*spawner.Client)
	Close() error
}

// UseSpawner gives d a spawner helper when the suite runs with one, and
// returns the function that closes it, to call after d is closed.
func UseSpawner(d Driver) (closeSpawner func() error, err error) {
	if !WithSpawner() {
		return func() error { return nil }, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c, err := spawner.Start(exe)
	if err != nil {
		return nil, err
	}
	d.UseSpawner(c)
	return c.Close, nil
}

// Setup gives d a spawner helper when the suite runs with one, and closes
// d, then the helper, when the test ends: a test that stops its apps in a
// cleanup must register that cleanup after calling Setup.
func Setup(t testing.TB, d Driver) {
	t.Helper()
	closeSpawner, err := UseSpawner(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("closing the exec driver: %v", err)
		}
		if err := closeSpawner(); err != nil {
			t.Errorf("closing the spawner: %v", err)
		}
	})
}
