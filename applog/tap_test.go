package applog

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The tap sees the output in order, as it passes into the log, until it
// says it has seen enough; the log gets everything either way.
func TestTapSeesTheOutputUntilItHasEnough(t *testing.T) {
	l := New(Config{Dir: t.TempDir()})
	defer closeLogs(t, l)
	var seen []byte
	taps := 0
	enough := make(chan struct{})
	w, wait, err := l.OpenTapped("web", func(p []byte) bool {
		taps++
		seen = append(seen, p...)
		if len(seen) < len("one\n") {
			return true
		}
		close(enough)
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	// The second line comes only once the tap has said enough (the
	// program waits for a file made then): it must not be called again.
	flag := filepath.Join(t.TempDir(), "go-on")
	cmd := startProgram(t, w, "echo one; i=0; while [ ! -e "+flag+" ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done; echo two")
	select {
	case <-enough:
	case <-time.After(10 * time.Second):
		t.Fatal("the tap never saw the first line")
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := wait(waitCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// wait returned: the copy goroutine is done with seen and taps.
	if string(seen) != "one\n" || taps != 1 {
		t.Errorf("tap saw %q in %d calls, want \"one\\n\" in 1", seen, taps)
	}
	if got, _ := os.ReadFile(l.Path("web")); string(got) != "one\ntwo\n" {
		t.Errorf("log = %q", got)
	}
}
