package httpcap

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs an HTTP server under l on a loopback port until cleanup.
func serve(t *testing.T, l Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l.Apply(srv, ln)) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// get sends one keep-alive request on c and reads the answer.
func get(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// The attack: 494 idle keep-alive connections to the metrics endpoint
// starved the daemon of descriptors. With a cap of 2, a third client
// waits in the backlog (its connect succeeds, nothing is reset) and is
// answered once the idle ones are closed by IdleTimeout.
func TestIdleConnectionsAreClosedAndTheCapHoldsTheRestInTheBacklog(t *testing.T) {
	const idle = 300 * time.Millisecond
	addr := serve(t, Limits{MaxConns: 2, IdleTimeout: idle})
	var idles []*bufio.Reader
	for range 2 {
		c, r := dial(t, addr)
		get(t, c, r)
		idles = append(idles, r)
	}
	wentIdle := time.Now()
	c3, r3 := dial(t, addr)
	get(t, c3, r3)
	if waited := time.Since(wentIdle); waited < idle*3/4 {
		t.Errorf("the third connection was answered %v after two went idle, want after the idle timeout of %v: the cap did not hold", waited, idle)
	}
	for i, r := range idles {
		if _, err := r.ReadByte(); err != io.EOF {
			t.Errorf("idle connection %d: read %v, want EOF: idle keep-alive connections are not closed", i, err)
		}
	}
}

// A client that connects and sends nothing is closed after
// ReadHeaderTimeout and gives its slot back.
func TestASilentClientIsClosedAtTheHeaderTimeout(t *testing.T) {
	addr := serve(t, Limits{MaxConns: 1, ReadHeaderTimeout: 200 * time.Millisecond})
	silent, r := dial(t, addr)
	_ = silent.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadByte(); err != io.EOF && (err == nil || !strings.Contains(err.Error(), "reset")) {
		t.Fatalf("silent client: read %v, want EOF", err)
	}
	c, r2 := dial(t, addr)
	get(t, c, r2)
}
