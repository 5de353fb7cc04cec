package cgroup

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var unsafeChars = regexp.MustCompile(`[^a-z0-9_-]+`)

// testName is a subtree name for this test in this process.
func testName(t *testing.T) string {
	n := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-")
	return fmt.Sprintf("dynapm-test-%.150s-%d", n, os.Getpid())
}

// openTest opens a subtree of the test's own, destroyed with its groups
// when the test ends, or skips the test where cgroup2 is not usable.
func openTest(t *testing.T) *Subtree {
	t.Helper()
	s, err := Open(Config{Name: testName(t)})
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("cgroup2 is not usable here (needs a writable cgroup2 mount, e.g. as root): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroySubtree(t, s) })
	return s
}

func destroySubtree(t *testing.T, s *Subtree) {
	t.Helper()
	names, err := s.List()
	if err != nil {
		t.Error(err)
	}
	for _, n := range names {
		g, err := s.Open(n)
		if err == nil {
			err = g.Remove()
		}
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	s.Close()
	if err := unix.Rmdir(s.Path()); err != nil {
		t.Errorf("cleanup: removing %s: %v", s.Path(), err)
	}
}
