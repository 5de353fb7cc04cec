package admin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestTailLines(t *testing.T) {
	long := strings.Repeat("x", 100<<10) // longer than one read chunk
	cases := []struct {
		name, content string
		n             int
		want          string
	}{
		{"empty", "", 5, ""},
		{"fewer lines than asked", "a\nb\n", 5, "a\nb\n"},
		{"last two", "a\nb\nc\n", 2, "b\nc\n"},
		{"no final newline", "a\nb\nc", 2, "b\nc"},
		{"zero", "a\nb\n", 0, ""},
		{"across chunks", "first\n" + long + "\nlast\n", 2, long + "\nlast\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.log")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, off, err := tailLines(f, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("tail = %q, want %q", trunc(got), trunc([]byte(tc.want)))
			}
			if off != int64(len(tc.content)) {
				t.Errorf("offset = %d, want %d", off, len(tc.content))
			}
		})
	}
}

func trunc(b []byte) string {
	if len(b) > 40 {
		return string(b[:20]) + "…" + string(b[len(b)-20:])
	}
	return string(b)
}

func TestLogsReturnsTheTail(t *testing.T) {
	_, c, logDir := startServer(t, newTestController("web"))
	var sb strings.Builder
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&sb, "line %d\n", i)
	}
	if err := os.WriteFile(filepath.Join(logDir, "web.log"), []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := c.Logs(context.Background(), "web", 3, false, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "line 98\nline 99\nline 100\n" {
		t.Fatalf("logs = %q", out.String())
	}
}

// A log replaced by a symlink to another file (planted while someone else
// could write the state directory) never shows that file.
func TestLogsNeverFollowASymlinkInPlaceOfALog(t *testing.T) {
	_, c, logDir := startServer(t, newTestController("web"))
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("root's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(logDir, "web.log")); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := c.Logs(context.Background(), "web", 3, false, &out)
	if strings.Contains(out.String(), "secret") || err == nil {
		t.Fatalf("logs through a planted symlink: %q, %v; want an error and nothing of the file", out.String(), err)
	}
}

func TestLogsOfKnownAppWithoutLogIsEmpty(t *testing.T) {
	_, c, _ := startServer(t, newTestController("web"))
	var out bytes.Buffer
	if err := c.Logs(context.Background(), "web", 10, false, &out); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("logs = %q, want nothing", out.String())
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestLogsFollowStreamsAppendsAcrossRotation(t *testing.T) {
	_, c, logDir := startServer(t, newTestController("web"))
	path := filepath.Join(logDir, "web.log")
	appendTo(t, path, "old\nbefore\n")
	ctx, cancel := context.WithCancel(context.Background())
	var out testutil.Buffer
	done := make(chan error, 1)
	go func() { done <- c.Logs(ctx, "web", 1, true, &out) }()
	waitFor(t, "the tail", func() bool { return out.String() == "before\n" })

	appendTo(t, path, "appended\n")
	waitFor(t, "the appended line", func() bool { return strings.HasSuffix(out.String(), "appended\n") })

	// Rotation: the file is renamed (its last lines written just before)
	// and a new one takes its place.
	appendTo(t, path, "last of old file\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, "first of new file\n")
	want := "before\nappended\nlast of old file\nfirst of new file\n"
	waitFor(t, "lines across rotation", func() bool { return out.String() == want })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Logs after cancel: %v", err)
	}
}

func TestShutdownEndsFollowingClients(t *testing.T) {
	s, c, logDir := startServer(t, newTestController("web"))
	appendTo(t, filepath.Join(logDir, "web.log"), "hello\n")
	var out testutil.Buffer
	done := make(chan error, 1)
	go func() { done <- c.Logs(context.Background(), "web", 10, true, &out) }()
	waitFor(t, "the tail", func() bool { return out.String() == "hello\n" })
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Logs after shutdown: %v", err)
	}
}
