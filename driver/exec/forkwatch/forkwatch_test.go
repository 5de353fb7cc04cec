package forkwatch

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// state is pid's state letter in /proc/PID/stat.
func state(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0][0]
}

// The watch kills only a child still in its vfork: a start that takes
// long, with children of the same thread made before it and during it
// (execed), kills none of them and is not stalled.
func TestWatchKillsNoChildThatExeced(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sleep := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	before := sleep()
	scans := make(chan struct{}, 100)
	scanned = func() { scans <- struct{}{} }
	defer func() { scanned = nil }()
	var during *exec.Cmd
	// The bound must outlast the vfork window of the start of during
	// itself, which the watch would rightly take for stalled: a loaded
	// machine stretched it past a millisecond in CI.
	stalled, err := Start(200*time.Millisecond, func() error {
		during = sleep()
		// Three looks at the children while this start still runs.
		deadline := time.After(10 * time.Second)
		for range 3 {
			select {
			case <-scans:
			case <-deadline:
				t.Error("the watch did not look at the children")
				return nil
			}
		}
		return nil
	})
	if stalled || err != nil {
		t.Errorf("Start: stalled %v, %v", stalled, err)
	}
	for _, cmd := range []*exec.Cmd{before, during} {
		if s := state(t, cmd.Process.Pid); s == 'Z' || s == 'X' {
			t.Errorf("child %d killed by the watch", cmd.Process.Pid)
		}
	}
}
