package execdriver

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// TestStartRefusesAFixedUDPUpstreamAForeignProcessHolds: a UDP app whose
// fixed upstream another process has bound is not started (the port
// bound would pass its readiness check at once); once the port is free it
// starts, and is ready when its own program has bound it.
func TestStartRefusesAFixedUDPUpstreamAForeignProcessHolds(t *testing.T) {
	m, _ := newTestManager(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstream := pc.LocalAddr().String()
	pc.Close()
	foreignPid := filepath.Join(t.TempDir(), "foreign.pid")
	foreign := exec.Command(testutil.TestApp(t), "-mode", "udp-echo", "-listen", upstream, "-pidfile", foreignPid)
	if err := foreign.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = foreign.Wait(); close(done) }()
	kill := func() { _ = foreign.Process.Kill(); <-done }
	t.Cleanup(kill)
	pid := testutil.ReadPidFile(t, foreignPid)

	mine := filepath.Join(t.TempDir(), "mine.pid")
	spec := upstreamApp(t, upstream, "-mode", "udp-echo", "-listen", upstream, "-pidfile", mine)
	spec.Listen = []string{"127.0.0.1:1/udp"}
	m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), managerWait)
	defer cancel()
	_, _, err = m.Wake(ctx, "web")
	wantErr(t, err, lifecycle.ErrUpstreamInUse)
	for _, want := range []string{upstream + "/udp", "pid " + strconv.Itoa(pid)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not hold %q", err, want)
		}
	}
	kill()
	if err := m.Start(ctx, "web", "manual"); err != nil {
		t.Fatalf("start once the port is free: %v", err)
	}
	if st := webStatus(t, m); st.State != lifecycle.Ready || st.Pid != testutil.ReadPidFile(t, mine) {
		t.Fatalf("after the start: %+v, want ready with the app's own program", st)
	}
}
