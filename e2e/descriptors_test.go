package e2e

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dynapm/dynapm/internal/testutil"
)

// The attack: with its descriptors used up, the daemon accepted clients
// and reset them, and another app's wake failed on "picking a free port".
// A daemon left a handful of descriptors (prlimit on the running daemon)
// serves a burst of 40 clients of a running app and a client of a stopped
// one: every one is served, in the backlog or held meanwhile, none reset.
func TestDaemonOutOfDescriptorsServesEveryClientInTurn(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	warm, cold := testutil.FreeAddr(t), testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "warm.yaml"), echoAppOn(t, []string{warm}, filepath.Join(t.TempDir(), "pid"), ""))
	testutil.WriteFile(t, filepath.Join(apps, "cold.yaml"), echoAppOn(t, []string{cold}, filepath.Join(t.TempDir(), "pid"), ""))
	d := startDaemon(t, apps)
	if !tryEcho(warm, "warm up") {
		t.Fatal("the running app is not served before the limit")
	}
	pid := d.cmd.Process.Pid
	var orig unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &orig); err != nil {
		t.Fatal(err)
	}
	// Room for a few connections at a time: each takes two (the client
	// and the upstream). A start takes up to six at once (a pipe for its
	// output, one for exec's errors, /dev/null, the port picked) and
	// keeps its log file open: with fewer it could never happen.
	n := uint64(fdCount(t, pid) + 12)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: orig.Max}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Prlimit(pid, unix.RLIMIT_NOFILE, &orig, nil) })

	const clients = 40
	var wg sync.WaitGroup
	failed := make(chan string, clients+1)
	for i := range clients + 1 {
		addr := warm
		if i == clients {
			addr = cold
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := echoErr(addr, "flood"); err != nil {
				failed <- addr + ": " + err.Error()
			}
		}()
	}
	wg.Wait()
	close(failed)
	if len(failed) > 0 {
		t.Logf("the daemon's descriptors (%d of %d):\n%s", fdCount(t, pid), n, fdList(pid))
	}
	for f := range failed {
		t.Errorf("a client was not served with %d descriptors: %s", n, f)
	}
	if !strings.Contains(d.out.String(), "too many open files") {
		t.Errorf("the burst never ran the daemon out of descriptors (%d): the test proved nothing", n)
	}
}

// echoErr is tryEcho with the reason it failed.
func echoErr(addr, msg string) error {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(reloadWait))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("after %v: %w", time.Since(start), err)
	}
	if string(reply) != msg {
		return fmt.Errorf("after %v: reply %q, want %q", time.Since(start), reply, msg)
	}
	return nil
}
