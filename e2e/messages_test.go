package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// saysOnce fails the test when a line of text names the app, or says
// "starting app" or "waking app", more than once: each layer of an error
// adds only what it alone knows.
func saysOnce(t *testing.T, what, text, app string) {
	t.Helper()
	for line := range strings.Lines(text) {
		for _, phrase := range []string{`"` + app + `"`, "app=" + app, "starting app", "waking app", "start failed"} {
			if strings.Count(line, phrase) > 1 {
				t.Errorf("%s says %q more than once: %s", what, phrase, line)
			}
		}
	}
}

// An app whose program does not exist: the start command, status, a
// connection's log line and the daemon's say so once each, naming the
// program and where it was looked for.
func TestMessagesOfAMissingProgramSayEachThingOnce(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "nocmd.yaml"), fmt.Sprintf("listen: %q\ncommand: [no-such-program-dynapm, x]\n", listen))
	testutil.WriteFile(t, filepath.Join(apps, "norel.yaml"), fmt.Sprintf("listen: %q\ncommand: [./missing]\n", testutil.FreeAddr(t)))
	d := startDaemon(t, apps, "-state", state)

	code, _, errOut := dynapm(t, "start", "nocmd", "-state", state)
	want := `dynapm: starting app "nocmd": start failed: program "no-such-program-dynapm" not found: no executable file of that name in PATH (`
	if code != 1 || !strings.HasPrefix(errOut, want) {
		t.Errorf("start nocmd: exit %d, stderr %q; want it to start %q", code, errOut, want)
	}
	saysOnce(t, "dynapm start", errOut, "nocmd")

	code, _, errOut = dynapm(t, "start", "norel", "-state", state)
	want = `dynapm: starting app "norel": start failed: program "./missing" (` + filepath.Join(apps, "missing") + `) not found: no such file`
	if code != 1 || !strings.HasPrefix(errOut, want) {
		t.Errorf("start norel: exit %d, stderr %q; want it to start %q", code, errOut, want)
	}

	// A connection is closed unserved once the backoff is over, and
	// the log says why.
	testutil.Eventually(t, 20*time.Second, func() bool {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Read(make([]byte, 1))
		c.Close()
		return strings.Contains(d.out.String(), `reason=connection`)
	}, "no start for a connection")
	d.waitLog(t, `msg="connection closed unserved"`, "app=nocmd", `err="waking app \"nocmd\": `)
	saysOnce(t, "the daemon's log", d.out.String(), "nocmd")

	a := statusOf(t, state, "nocmd")
	if le := fmt.Sprint(a["last_error"]); !strings.HasPrefix(le, `start failed: program "no-such-program-dynapm" not found`) {
		t.Errorf("status last_error = %q", le)
	}
	saysOnce(t, "status", fmt.Sprint(a["last_error"]), "nocmd")
}
