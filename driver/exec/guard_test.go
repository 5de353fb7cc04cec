package execdriver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// limitsLine runs testapp -print-limits with spec's guards through the exec
// driver and returns the line it printed.
func limitsLine(t *testing.T, guard func(*appfile.Spec)) string {
	t.Helper()
	d := newExecTestDriver(t)
	req, dir := execRequest(t, "-print-limits", "-mode", "sleep")
	guard(req.Spec)
	p := execStart(t, d, req)
	logPath := filepath.Join(dir, "app.log")
	var line string
	testutil.Eventually(t, execWaitLimit, func() bool {
		b, _ := os.ReadFile(logPath)
		for l := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(l, "limits ") {
				line = l
				return true
			}
		}
		return false
	}, "no limits line in %s", logPath)
	execStop(t, p, time.Second)
	return line
}

func TestExecAppliesLimitsAndUmask(t *testing.T) {
	line := limitsLine(t, func(s *appfile.Spec) {
		s.Limits = appfile.Limits{NoFile: 123, NProc: 4567}
		s.Umask = "027"
	})
	for _, want := range []string{"nofile=123", "nproc=4567", "umask=027"} {
		if !strings.Contains(line, want) {
			t.Errorf("limits line %q lacks %q", line, want)
		}
	}
}

func TestExecWithoutGuardsInheritsTheDaemons(t *testing.T) {
	line := limitsLine(t, func(*appfile.Spec) {})
	if strings.Contains(line, "nofile=123 ") {
		t.Fatalf("limits line %q shows a limit nobody set", line)
	}
}

func TestExecRunsAsUserAndGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching user needs root")
	}
	// The other user must be able to run the program in its directory.
	dir, err := os.MkdirTemp("", "guard")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := os.ReadFile(testutil.TestApp(t))
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "testapp")
	if err := os.WriteFile(prog, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	line := limitsLine(t, func(s *appfile.Spec) {
		s.User, s.Group = "65534", "65533"
		s.Command[0], s.Dir = prog, dir
	})
	if !strings.Contains(line, "uid=65534 gid=65533") {
		t.Fatalf("limits line %q: want uid=65534 gid=65533", line)
	}
}

func TestExecUserNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root")
	}
	d := newExecTestDriver(t)
	req, _ := execRequest(t, "-mode", "sleep")
	req.Spec.User = "nobody"
	if _, err := d.Start(t.Context(), req); err == nil || !strings.Contains(err.Error(), "root") {
		t.Fatalf("Start with user as non-root: %v; want an error saying root is needed", err)
	}
}
