package execdriver

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// startForeign runs testapp echoing on listen as a process DynaPM knows
// nothing of (no record in STATE/run), and returns its pid once it listens.
// It is killed when the test ends; kill ends it sooner.
func startForeign(t *testing.T, listen string) (pid int, kill func()) {
	t.Helper()
	pidfile := filepath.Join(t.TempDir(), "foreign.pid")
	cmd := exec.Command(testutil.TestApp(t), "-mode", "echo", "-listen", listen, "-pidfile", pidfile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	kill = func() {
		_ = cmd.Process.Kill()
		<-done
	}
	t.Cleanup(kill)
	return testutil.ReadPidFile(t, pidfile), kill
}

func TestStartRefusesAFixedUpstreamAForeignProcessAlreadyServes(t *testing.T) {
	m, logs := newTestManager(t)
	upstream := testutil.FreeAddr(t)
	foreign, kill := startForeign(t, upstream)
	mine := filepath.Join(t.TempDir(), "mine.pid")
	m.Apply([]*appfile.Spec{upstreamApp(t, upstream, "-mode", "echo", "-listen", upstream, "-pidfile", mine)})

	ctx, cancel := context.WithTimeout(context.Background(), managerWait)
	defer cancel()
	_, _, err := m.Wake(ctx, "web")
	wantErr(t, err, lifecycle.ErrUpstreamInUse)
	wantErr(t, err, lifecycle.ErrStartFailed)
	msg := err.Error()
	for _, want := range []string{`app "web"`, upstream, "pid " + strconv.Itoa(foreign), "testapp -mode echo -listen " + upstream, "stop that process"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not hold %q", msg, want)
		}
	}
	if _, err := os.Stat(mine); !os.IsNotExist(err) {
		t.Errorf("the app's program ran although its upstream was taken (pid file: %v)", err)
	}
	logged := false
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "app failed to start") && strings.Contains(line, "app=web") && strings.Contains(line, "upstream already in use") {
			logged = true
		}
	}
	if !logged {
		t.Errorf("the failure is not logged with the app:\n%s", logs)
	}

	// The usual backoff: the next connection fails fast, no new attempt.
	_, _, err = m.Wake(ctx, "web")
	wantErr(t, err, lifecycle.ErrBackoff)
	if st := webStatus(t, m); st.State != lifecycle.Failed || st.Starts != 1 || !strings.Contains(st.LastError, "upstream already in use") {
		t.Fatalf("after the refused start: %+v, want failed after 1 start", st)
	}

	// Once the port is free, the app starts and is the one served.
	kill()
	if err := m.Start(ctx, "web", "manual"); err != nil {
		t.Fatalf("starting after the foreign process left: %v", err)
	}
	up, release, err := m.Wake(ctx, "web")
	if err != nil {
		t.Fatalf("waking: %v", err)
	}
	defer release()
	if got := testutil.EchoLine(t, up.String(), "mine", managerWait); got != "mine" {
		t.Fatalf("echo = %q", got)
	}
	if st := webStatus(t, m); st.Pid != testutil.ReadPidFile(t, mine) {
		t.Fatalf("served by pid %d, want the app's own program", st.Pid)
	}
}

func TestFixedUpstreamThatIsFreeStartsAsUsual(t *testing.T) {
	m, _ := newTestManager(t)
	upstream := testutil.FreeAddr(t)
	m.Apply([]*appfile.Spec{upstreamApp(t, upstream, "-mode", "echo", "-listen", upstream)})
	ctx, cancel := context.WithTimeout(context.Background(), managerWait)
	defer cancel()
	up, release, err := m.Wake(ctx, "web")
	if err != nil {
		t.Fatalf("waking: %v", err)
	}
	defer release()
	if up.String() != upstream {
		t.Fatalf("leased %v, want %s", up, upstream)
	}
	if got := testutil.EchoLine(t, up.String(), "free", managerWait); got != "free" {
		t.Fatalf("echo = %q", got)
	}
}

func TestFindListenerNamesTheHolderOnIPv4AndIPv6(t *testing.T) {
	addrs := []string{testutil.FreeAddr(t)}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	} else {
		t.Logf("no IPv6 loopback, IPv4 only: %v", err)
	}
	for _, addr := range addrs {
		pid, _ := startForeign(t, addr)
		gotPid, cmd, ok := FindListener(netip.MustParseAddrPort(addr))
		if !ok || gotPid != pid || !strings.Contains(cmd, "-listen "+addr) {
			t.Errorf("FindListener(%s) = %d, %q, %v; want pid %d and its command", addr, gotPid, cmd, ok, pid)
		}
	}
	// Nothing listens on a port just released.
	free := netip.MustParseAddrPort(testutil.FreeAddr(t))
	if pid, cmd, ok := FindListener(free); ok {
		t.Errorf("FindListener(%s) = %d, %q on a free port", free, pid, cmd)
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:0050":                         "0.0.0.0:80",
		"00000000000000000000000001000000:1F90": "[::1]:8080",
		"0000000000000000FFFF00000100007F:0016": "[::ffff:127.0.0.1]:22",
	} {
		got, ok := parseProcAddr(in)
		if !ok || got.String() != want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "zz00007F:0050", "0100:0050", "0100007F:fffff"} {
		if got, ok := parseProcAddr(bad); ok {
			t.Errorf("parseProcAddr(%q) = %v, want failure", bad, got)
		}
	}
}
