package memory

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The test binary doubles as the child process that allocates memory: when
// helperEnv is set it runs helperMain instead of the tests. (After the core
// lands, internal/testapp -alloc serves the same purpose.)
const (
	helperEnv    = "DYNAPM_MEMORY_HELPER"
	helperMiBEnv = "DYNAPM_MEMORY_HELPER_MIB"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		goleak.VerifyTestMain(m)
	case "alloc":
		os.Exit(helperAlloc())
	case "fork":
		os.Exit(helperFork())
	default:
		os.Exit(2)
	}
}

// helperAlloc maps and touches the requested MiB, says "ready" and lives
// until stdin closes. The memory is an anonymous mapping, not a Go slice,
// so neither the garbage collector nor the race detector's shadow memory
// changes how much is resident.
func helperAlloc() int {
	mib, err := strconv.Atoi(os.Getenv(helperMiBEnv))
	if err != nil {
		return 2
	}
	if mib > 0 {
		mem, err := syscall.Mmap(-1, 0, mib<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for i := 0; i < len(mem); i += 4096 {
			mem[i] = 1
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// helperFork starts an allocating child (sharing stdin, so it ends with
// us), waits until it is ready, then says "ready" itself.
func helperFork() int {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=alloc")
	cmd.Stdin = os.Stdin
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		return 1
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = cmd.Wait()
	return 0
}

// helper is a running helper process (group).
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startHelper starts the test binary as a child that allocates mib MiB (in a
// grandchild when fork is set) and returns once the memory is touched. The
// child runs in its own process group, killed at cleanup.
func startHelper(t testing.TB, mib int, fork bool) *helper {
	t.Helper()
	mode := "alloc"
	if fork {
		mode = "fork"
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperMiBEnv+"="+strconv.Itoa(mib))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	h := &helper{cmd: cmd, stdin: stdin}
	t.Cleanup(h.kill)
	defer r.Close()
	// Generous: a loaded 2-core machine under -race may take a while.
	_ = r.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper did not become ready: %q %v", line, err)
	}
	return h
}

// pid returns the helper's pid.
func (h *helper) pid() int { return h.cmd.Process.Pid }

// kill ends the helper's process group and reaps the helper. It is safe to
// call more than once.
func (h *helper) kill() {
	if h.cmd.ProcessState != nil {
		return
	}
	_ = h.stdin.Close()
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	_ = h.cmd.Wait()
}
