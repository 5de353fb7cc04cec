package cron

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// lumberjack (under applog, which the log tests use) never ends its
	// compression goroutine.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}
