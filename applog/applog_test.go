package applog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestMain(m *testing.M) {
	// lumberjack starts one goroutine per Logger that it never ends (see
	// the comment in Open): one per app, by design.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}

func closeLogs(t *testing.T, l *Logs) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Error(err)
	}
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startProgram runs sh -c script in its own process group with w as its
// stdout and stderr, and closes the caller's copy of w as the daemon does.
func startProgram(t *testing.T, w *os.File, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestProgramOutputLandsInTheLog(t *testing.T) {
	l := New(Config{Dir: filepath.Join(t.TempDir(), "logs")})
	defer closeLogs(t, l)
	w, wait, err := l.Open("web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintln(w, "--- starting ---"); err != nil {
		t.Fatal(err)
	}
	cmd := startProgram(t, w, "echo out; echo err >&2")
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := wait(waitCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(l.Path("web"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "--- starting ---\nout\nerr\n" {
		t.Fatalf("log = %q", got)
	}
	st, err := os.Stat(l.Path("web"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("log mode = %v, want 0600", st.Mode().Perm())
	}
}

func TestSecondStartAppendsToTheSameLog(t *testing.T) {
	l := New(Config{Dir: t.TempDir()})
	defer closeLogs(t, l)
	for i := range 2 {
		w, wait, err := l.Open("web")
		if err != nil {
			t.Fatal(err)
		}
		if err := startProgram(t, w, fmt.Sprintf("echo run %d", i)).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := wait(waitCtx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(l.Path("web"))
	if string(got) != "run 0\nrun 1\n" {
		t.Fatalf("log = %q", got)
	}
}

func TestGrandchildHoldingTheLogDoesNotBlockTheProgram(t *testing.T) {
	l := New(Config{Dir: t.TempDir()})
	defer closeLogs(t, l)
	w, wait, err := l.Open("web")
	if err != nil {
		t.Fatal(err)
	}
	// The shell exits at once; its background child keeps stdout open.
	cmd := startProgram(t, w, "sleep 60 & echo parent done")
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait on the program blocked while a grandchild held its output")
	}
	// The copy goes on while the grandchild lives...
	if err := wait(waitCtx(t, 20*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait = %v, want the deadline while the grandchild holds the pipe", err)
	}
	// ...and ends with it (stopping kills the process group).
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := wait(waitCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(l.Path("web"))
	if string(got) != "parent done\n" {
		t.Fatalf("log = %q", got)
	}
}

func TestRotationKeepsAFewOldFiles(t *testing.T) {
	dir := t.TempDir()
	l := New(Config{Dir: dir, MaxBytes: 1 << 20, MaxBackups: 2})
	defer closeLogs(t, l)
	w, wait, err := l.Open("web")
	if err != nil {
		t.Fatal(err)
	}
	// 5 MiB in numbered 1 KiB lines: about five rotations.
	line := strings.Repeat("x", 1017)
	const lines = 5 << 10
	writeErr := make(chan error, 1)
	go func() {
		defer w.Close()
		for i := range lines {
			if _, err := fmt.Fprintf(w, "%05d %s\n", i, line); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if err := wait(waitCtx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(l.Path("web"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) > 1<<20 {
		t.Errorf("current log is %d bytes, over the 1 MiB limit", len(cur))
	}
	if !bytes.HasSuffix(cur, []byte(fmt.Sprintf("%05d %s\n", lines-1, line))) {
		t.Error("current log does not end with the last line written")
	}
	// lumberjack removes old backups in its own goroutine after rotating.
	var backups []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		backups, _ = filepath.Glob(filepath.Join(dir, "web-*.log"))
		if len(backups) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(backups) != 2 {
		t.Fatalf("backups = %v, want 2", backups)
	}
}

func TestCloseEndsCopiesLeftoversStillHold(t *testing.T) {
	l := New(Config{Dir: t.TempDir()})
	w, _, err := l.Open("web")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close() // a leftover process still holding the write end
	if _, err := fmt.Fprintln(w, "written before close"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Open("web"); err == nil {
		t.Fatal("Open after Close succeeded")
	}
	// goleak (TestMain) checks that the copy goroutine has ended.
}

// The program gets a blocking write end, as a shell's pipe would give it;
// the read end is on Go's netpoller, so that Close can interrupt a Read.
func TestLogPipeGivesTheProgramABlockingWriteEnd(t *testing.T) {
	r, w, err := logPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	flags, err := unix.FcntlInt(w.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK != 0 {
		t.Error("the write end is non-blocking")
	}
	if err := r.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		t.Fatalf("the read end is not pollable: %v", err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a read past its deadline returned %v", err)
	}
}

// plantedLog runs one start of app "adv" in a log directory where plant
// put something in place of its files beforehand (given the directory and
// the path of a file outside it that the test owns), and returns the log
// file's content and the daemon's log.
func plantedLog(t *testing.T, compress bool, plant func(dir, target string)) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("original\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plant(dir, target)
	var logged testutil.Buffer
	l := New(Config{Dir: dir, Compress: compress, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	defer closeLogs(t, l)
	w, wait, err := l.Open("adv")
	if err != nil {
		t.Fatal(err)
	}
	if err := startProgram(t, w, "echo app output").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := wait(waitCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if compress {
		// lumberjack compresses old files in a goroutine of its own.
		testutil.Eventually(t, 10*time.Second, func() bool {
			gz, _ := filepath.Glob(filepath.Join(dir, "adv-*.log.gz"))
			return len(gz) == 1 && describeFile(gz[0]) == ""
		}, "the old log was not compressed")
	}
	if got, err := os.ReadFile(target); err != nil || string(got) != "original\n" {
		t.Fatalf("the file outside the log directory now holds %q (%v): the log was written through what was planted", got, err)
	}
	fi, err := os.Lstat(l.Path("adv"))
	if err != nil {
		t.Fatal(err)
	}
	if what := describe(fi); what != "" {
		t.Fatalf("the app's log is %s", what)
	}
	got, err := os.ReadFile(l.Path("adv"))
	if err != nil {
		t.Fatal(err)
	}
	return string(got), logged.String()
}

func describeFile(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return err.Error()
	}
	return describe(fi)
}

// The daemon writes its app logs as root, in a directory another user may
// once have been able to write: nothing planted there before makes it
// write elsewhere. What was planted is removed, with a warning naming it.
func TestAPlantedLogIsRemovedNotWrittenThrough(t *testing.T) {
	for _, tc := range []struct {
		name     string
		compress bool
		plant    func(t *testing.T, dir, target string)
		found    string
	}{
		{"symlink", false, func(t *testing.T, dir, target string) {
			if err := os.Symlink(target, filepath.Join(dir, "adv.log")); err != nil {
				t.Fatal(err)
			}
		}, "a symlink to "},
		{"hard link", false, func(t *testing.T, dir, target string) {
			if err := os.Link(target, filepath.Join(dir, "adv.log")); err != nil {
				t.Fatal(err)
			}
		}, "a file with 2 hard links"},
		{"named pipe", false, func(t *testing.T, dir, target string) {
			// No reader: an open for writing would block for ever.
			if err := syscall.Mkfifo(filepath.Join(dir, "adv.log"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "a named pipe"},
		{"another user's file", false, func(t *testing.T, dir, target string) {
			if os.Geteuid() != 0 {
				t.Skip("giving a file to another user needs root")
			}
			path := filepath.Join(dir, "adv.log")
			testutil.WriteFile(t, path, "theirs\n")
			testutil.ChownNobody(t, path)
		}, "a file of nobody (uid 65534)"},
		{"compressed old log", true, func(t *testing.T, dir, target string) {
			// lumberjack compresses adv-TIME.log into adv-TIME.log.gz,
			// opened with O_TRUNC through whatever is there.
			old := filepath.Join(dir, "adv-2000-01-01T00-00-00.000.log")
			testutil.WriteFile(t, old, "old output\n")
			if err := os.Chmod(old, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, old+".gz"); err != nil {
				t.Fatal(err)
			}
		}, "a symlink to "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, logged := plantedLog(t, tc.compress, func(dir, target string) { tc.plant(t, dir, target) })
			if got != "app output\n" {
				t.Errorf("app log = %q, want the app's output alone", got)
			}
			if !strings.Contains(logged, "level=WARN msg=\"removed a file the daemon did not write from the log directory") ||
				!strings.Contains(logged, "found=\""+tc.found) {
				t.Errorf("no warning saying what was found (%q):\n%s", tc.found, logged)
			}
		})
	}
}

func TestALogDirectoryNotTheDaemonsOwnIsRefused(t *testing.T) {
	base := t.TempDir()
	elsewhere := filepath.Join(base, "elsewhere")
	if err := os.Mkdir(elsewhere, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "logs")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	l := New(Config{Dir: link})
	if err := l.Prepare(); err == nil || !strings.Contains(err.Error(), "log directory "+link+" is a symlink, not a directory") {
		t.Fatalf("Prepare on a symlink: %v", err)
	}
	if _, _, err := l.Open("web"); err == nil {
		t.Fatal("Open through a symlinked log directory")
	}
	closeLogs(t, l)

	if os.Geteuid() != 0 {
		t.Skip("giving the directory to another user needs root")
	}
	testutil.ChownNobody(t, elsewhere)
	l = New(Config{Dir: elsewhere})
	defer closeLogs(t, l)
	if err := l.Prepare(); err == nil || !strings.Contains(err.Error(), "log directory "+elsewhere+" is owned by nobody (uid 65534), not root; fix it with: chown root "+elsewhere) {
		t.Fatalf("Prepare on nobody's directory: %v", err)
	}
}
