package spawner

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The test binary is its own helper, as the dynapm binary is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HelperArg {
		os.Exit(Main())
	}
	goleak.VerifyTestMain(m)
}

// startClient starts a Client on this test binary, closed at cleanup.
func startClient(t testing.TB) *Client {
	t.Helper()
	c := start(t)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// outputFile creates a file for a program's output, closed at cleanup.
func outputFile(t *testing.T) *os.File {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return out
}

// start starts a Client on this test binary.
func start(t testing.TB) *Client {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(exe)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sh(script string) Request {
	return Request{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{"GREETING=hello"}}
}

func TestSpawnRunsTheProgramWithItsEnvironmentDirectoryAndOutput(t *testing.T) {
	c := startClient(t)
	out := outputFile(t)
	dir := t.TempDir()
	req := sh(`echo "$GREETING from $(pwd)"; echo to-stderr >&2; read line || echo stdin-empty`)
	req.Dir = dir
	ch, err := c.Spawn(req, out)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	got, _ := os.ReadFile(out.Name())
	want := "hello from " + dir + "\nto-stderr\nstdin-empty\n"
	if string(got) != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

func TestSpawnedProgramLeadsItsOwnProcessGroup(t *testing.T) {
	c := startClient(t)
	out := outputFile(t)
	ch, err := c.Spawn(sh(`echo $$; exec sleep 60`), out)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(out.Name())
		if strings.HasSuffix(string(b), "\n") {
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid != ch.Pid {
				t.Errorf("the program says its pid is %q, Spawn said %d", b, ch.Pid)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the program never wrote its pid")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pgid, err := syscall.Getpgid(ch.Pid)
	if err != nil || pgid != ch.Pid {
		t.Errorf("pgid %d (%v), want the pid %d", pgid, err, ch.Pid)
	}
	if err := syscall.Kill(-ch.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := ch.Wait(); err == nil || err.Error() != "signal: killed" {
		t.Errorf("Wait after SIGKILL: %v, want signal: killed", err)
	}
}

func TestWaitWordsTheExitAsExecDoes(t *testing.T) {
	c := startClient(t)
	for script, want := range map[string]string{
		"exit 0":        "",
		"exit 3":        "exit status 3",
		"kill -TERM $$": "signal: terminated",
	} {
		ch, err := c.Spawn(sh(script), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = ch.Wait()
		if got := errString(err); got != want {
			t.Errorf("%s: Wait = %q, want %q", script, got, want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestSpawnOfAMissingProgramFailsAsExecDoes(t *testing.T) {
	c := startClient(t)
	_, err := c.Spawn(Request{Path: "/nonexistent/program", Args: []string{"program"}}, nil)
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Op != "fork/exec" || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err %v, want a fork/exec PathError that is fs.ErrNotExist", err)
	}
	// The helper serves on after a failure.
	ch, err := c.Spawn(sh("exit 0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A program gets none of the helper's sockets (fds 3 and 4 there, passed
// without close-on-exec): one holding the events socket would hide the
// helper's death from the daemon.
func TestSpawnedProgramGetsNoneOfTheHelpersSockets(t *testing.T) {
	c := startClient(t)
	out := outputFile(t)
	ch, err := c.Spawn(Request{Path: "/bin/ls", Args: []string{"ls", "-l", "/proc/self/fd"}}, out)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Wait(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out.Name())
	if !strings.Contains(string(b), " 1 -> "+out.Name()) {
		t.Fatalf("no descriptor 1 to the output in:\n%s", b)
	}
	if strings.Contains(string(b), "socket:") {
		t.Errorf("the program holds a socket:\n%s", b)
	}
}

// The helper never holds the caller's descriptors: it was started before
// them, and the output descriptor it is sent goes to the program alone.
func TestTheHelperHoldsNoDescriptorOfTheDaemon(t *testing.T) {
	c := startClient(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ch, err := c.Spawn(sh("exit 0"), f)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Wait(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, e := range entries {
		if target, err := os.Readlink("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/fd/" + e.Name()); err == nil && target == f.Name() {
			t.Errorf("the helper still holds %s as descriptor %s", target, e.Name())
		}
	}
}

// When the helper dies, Spawn says so (the driver then forks itself), and
// the programs it started are still waited for, their status unknown.
func TestAProgramOutlivesItsHelper(t *testing.T) {
	c := start(t)
	defer func() {
		if err := c.Close(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("Close after the helper was killed: %v, want its exit status", err)
		}
	}()
	ch, err := c.Spawn(sh("exec sleep 60"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not notice the helper's death")
	}
	if _, err := c.Spawn(sh("exit 0"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Spawn after the helper died: %v, want ErrClosed", err)
	}
	select {
	case <-ch.done:
		t.Fatal("the program was taken for ended while it runs")
	default:
	}
	if err := syscall.Kill(ch.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := ch.Wait(); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("Wait: %v, want an unknown status", err)
	}
}

// SpawnFiles gives the program the descriptors it is sent, one file
// twice where it is given twice (stdin and stdout), and with ListenPID
// its pid in LISTEN_PID.
func TestSpawnFilesPassesDescriptorsAndSetsListenPID(t *testing.T) {
	c := startClient(t)
	out := outputFile(t)
	in, err := os.Open("/etc/hostname")
	if err != nil {
		t.Skip(err)
	}
	defer in.Close()
	extra := outputFile(t)
	req := sh(`echo "$LISTEN_PID $$ $(head -c1 <&0 | wc -c)"; echo fd3 >&3`)
	req.ListenPID = true
	ch, err := c.SpawnFiles(req, []*os.File{in, out, out, extra}, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	pid := strconv.Itoa(ch.Pid)
	if got, want := readFile(t, out.Name()), pid+" "+pid+" 1\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if got := readFile(t, extra.Name()); got != "fd3\n" {
		t.Errorf("fd 3 got %q, want fd3", got)
	}
}

// A request naming a descriptor it was not sent is refused, and the
// helper goes on serving.
func TestSpawnRefusesADescriptorNotSent(t *testing.T) {
	c := startClient(t)
	req := sh("exit 0")
	req.Fds = []int{-1, 0, 0} // SpawnFiles sets Fds: send by hand
	b, _ := json.Marshal(req)
	c.spawnMu.Lock()
	err := sendmsg(c.ctl, b, nil)
	buf := make([]byte, 4096)
	n, rerr := recv(c.ctl, buf)
	c.spawnMu.Unlock()
	if err != nil || rerr != nil {
		t.Fatal(err, rerr)
	}
	if !strings.Contains(string(buf[:n]), "index 0 of 0 sent") {
		t.Errorf("answer %q, want a refusal naming the index", buf[:n])
	}
	ch, err := c.Spawn(sh("exit 0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Wait(); err != nil {
		t.Errorf("Wait after the refusal: %v", err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
