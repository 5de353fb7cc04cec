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
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dynapm/dynapm/driver/exec/cgroup"
	"github.com/dynapm/dynapm/driver/exec/spawner"
	"github.com/dynapm/dynapm/internal/testutil"
)

// spawnerEnv set makes a suite start its programs through the spawner
// helper; Main sets it for the second run.
const spawnerEnv = "DYNAPM_TEST_SPAWNER"

// WithSpawner reports whether this run of the suite starts programs
// through the spawner helper.
func WithSpawner() bool { return os.Getenv(spawnerEnv) != "" }

// ContainEnv chooses how Setup contains a suite's programs: Cgroup (a
// cgroup per program, where cgroup2 is usable here) or ProcessGroup (the
// fallback, with the test binary as child subreaper); unset, the
// driver's default: process groups alone.
const ContainEnv = "DYNAPM_TEST_CONTAIN"

// The values of ContainEnv.
const (
	Cgroup       = "cgroup"
	ProcessGroup = "process-group"
)

// Main is the TestMain of such a suite, which pkg names in the banner of
// its second run. Started as the spawner helper, the binary serves as
// one. Otherwise Main runs the suite, checks that no goroutine leaked
// and, when both passed, runs the suite again with the spawner helper
// (unless this is that second run). It returns the exit code.
//
// contain, when given, are containments (ContainEnv) to run the suite in:
// the first for both runs above, each other for one more run without the
// spawner.
func Main(m *testing.M, pkg string, contain ...string) int {
	if len(os.Args) > 1 && os.Args[1] == spawner.HelperArg {
		return spawner.Main()
	}
	top := !WithSpawner() && os.Getenv(ContainEnv) == ""
	if top && len(contain) > 0 {
		os.Setenv(ContainEnv, contain[0])
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak (spawner %v): %v\n", WithSpawner(), err)
			code = 1
		}
	}
	if code == 0 && !WithSpawner() && (top || len(contain) == 0) {
		if err := testutil.RerunSuite("=== "+pkg+": the same tests with programs started through the spawner helper", spawnerEnv+"=1"); err != nil {
			fmt.Fprintf(os.Stderr, "suite with the spawner: %v\n", err)
			code = 1
		}
	}
	for _, c := range contain[min(1, len(contain)):] {
		if code != 0 || !top {
			break
		}
		if err := testutil.RerunSuite("=== "+pkg+": the same tests contained by "+c, ContainEnv+"="+c); err != nil {
			fmt.Fprintf(os.Stderr, "suite contained by %s: %v\n", c, err)
			code = 1
		}
	}
	return code
}

// Driver is what this package needs of an exec driver.
type Driver interface {
	UseSpawner(*spawner.Client)
	UseCgroups(*cgroup.Subtree)
	UseSubreaper() error
	Close() error
}

// Contain contains d's programs as ContainEnv says, in a cgroup subtree
// of name when by cgroup, and returns the function that removes the
// subtree, to call after d is closed. Where cgroup2 is not usable, it
// says so and leaves d as it is.
func Contain(d Driver, name string) (cleanup func() error, err error) {
	switch os.Getenv(ContainEnv) {
	case Cgroup:
		sub, err := cgroup.Open(cgroup.Config{Name: name})
		if errors.Is(err, cgroup.ErrUnavailable) {
			fmt.Fprintf(os.Stderr, "exectest: no cgroups here, programs run in process groups: %v\n", err)
			return func() error { return nil }, nil
		}
		if err != nil {
			return nil, err
		}
		d.UseCgroups(sub)
		return func() error { return removeSubtree(sub) }, nil
	case ProcessGroup:
		return func() error { return nil }, d.UseSubreaper()
	}
	return func() error { return nil }, nil
}

// RemoveSubtree destroys the cgroup subtree name (one a test's daemon
// left) and what is left in it; it is not an error that it is missing.
func RemoveSubtree(name string) error {
	sub, err := cgroup.Open(cgroup.Config{Name: name})
	if err != nil {
		return err
	}
	return removeSubtree(sub)
}

// removeSubtree destroys what is left in sub and removes it.
func removeSubtree(sub *cgroup.Subtree) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names, err := sub.List()
	for _, n := range names {
		g, oerr := sub.Open(n)
		if oerr == nil {
			oerr = g.Destroy(ctx)
		}
		err = errors.Join(err, oerr)
	}
	return errors.Join(err, sub.Remove())
}

var subtrees atomic.Int64

// subtreeName is a new cgroup subtree name for this test process.
func subtreeName() string {
	return fmt.Sprintf("dynapm-test-%d-%d", os.Getpid(), subtrees.Add(1))
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
	uncontain, err := Contain(d, subtreeName())
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
		if err := uncontain(); err != nil {
			t.Errorf("removing the cgroup subtree: %v", err)
		}
	})
}
