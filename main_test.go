package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/dynapm/dynapm/driver/exec/spawner"
	"go.uber.org/goleak"
)

// The tests of package main's own functions: flags, dispatch, check, the
// client commands against an admin server in this process, and a daemon
// wired in this process. The tests that run the dynapm binary are in e2e/.

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == spawner.HelperArg {
		// The spawner helper of a daemon run in this process.
		os.Exit(spawner.Main())
	}
	code := m.Run()
	// The admin server of the client tests, the commands' clients and the
	// daemons wired in this process run here: none may outlive its test.
	// The one exception is lumberjack's per-log goroutine, which it never
	// ends (one per app log, by design: see applog), started by those
	// daemons (apply_order_test.go).
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
