package lifecycle_test

import (
	"log/slog"
	"os"
	"testing"

	execdriver "github.com/dynapm/dynapm/driver/exec"
	"github.com/dynapm/dynapm/internal/exectest"
	"github.com/dynapm/dynapm/lifecycle"
)

// TestMain hands the tests of package lifecycle the exec driver, which
// they cannot import themselves (it imports lifecycle), and runs them a
// second time with the programs started through the spawner helper.
func TestMain(m *testing.M) {
	lifecycle.NewTestDriver = func(t testing.TB, logger *slog.Logger) lifecycle.Driver {
		d := execdriver.New(logger)
		exectest.Setup(t, d)
		return d
	}
	os.Exit(exectest.Main(m, "lifecycle"))
}
