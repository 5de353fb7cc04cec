package sdnotify

import (
	"maps"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// receiveWithin is Receive bounded by a deadline.
func receiveWithin(t *testing.T, l *Listener) Message {
	t.Helper()
	if err := l.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	m, err := l.Receive()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func listenT(t *testing.T) *Listener {
	t.Helper()
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestListenerReceivesWhatNotifySendsWithTheSendersCredentials(t *testing.T) {
	l := listenT(t)
	if !strings.HasPrefix(l.Socket(), "@dynapm/notify/") {
		t.Fatalf("socket %q is not an abstract dynapm name", l.Socket())
	}
	n := &Notifier{Socket: l.Socket()}
	if err := n.Notify(Ready, Status("accepting\nconnections")); err != nil {
		t.Fatal(err)
	}
	m := receiveWithin(t, l)
	want := map[string]string{"READY": "1", "STATUS": "accepting connections"}
	if !maps.Equal(m.Fields, want) {
		t.Errorf("fields %q, want %q", m.Fields, want)
	}
	if m.PID != os.Getpid() || m.UID != uint32(os.Getuid()) || m.GID != uint32(os.Getgid()) {
		t.Errorf("sender pid %d uid %d gid %d, want %d %d %d", m.PID, m.UID, m.GID, os.Getpid(), os.Getuid(), os.Getgid())
	}
}

func TestListenerSkipsAnOverlongMessage(t *testing.T) {
	l := listenT(t)
	n := &Notifier{Socket: l.Socket()}
	if err := n.Notify("STATUS=" + strings.Repeat("x", MaxMessage)); err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err != nil {
		t.Fatal(err)
	}
	if m := receiveWithin(t, l); !maps.Equal(m.Fields, map[string]string{"READY": "1"}) {
		t.Fatalf("got %q; the overlong message was not skipped", m.Fields)
	}
}

// A sender may push descriptors along (FDSTORE=1): they must not stay open
// in the receiver. The write end of a pipe is sent and closed here; the read
// end sees EOF only once the receiver's copy is closed too.
func TestListenerClosesDescriptorsPassedToIt(t *testing.T) {
	l := listenT(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Sendmsg(fd, []byte("FDSTORE=1"), syscall.UnixRights(int(w.Fd())), &syscall.SockaddrUnix{Name: l.Socket()}, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if m := receiveWithin(t, l); m.Fields["FDSTORE"] != "1" {
		t.Fatalf("got %q", m.Fields)
	}
	if err := r.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err == nil || os.IsTimeout(err) {
		t.Fatalf("read of the pipe: %d, %v; want EOF: the passed descriptor is still open", n, err)
	}
}

func TestListenerReceiveEndsWhenClosed(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := l.Receive()
		errc <- err
	}()
	l.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Receive on a closed listener returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Receive did not return after Close")
	}
}

func TestParse(t *testing.T) {
	got := Parse([]byte("READY=1\nSTATUS=a=b\n\nno equals sign\n=x\nREADY=0\n"))
	want := map[string]string{"READY": "0", "STATUS": "a=b"}
	if !maps.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
