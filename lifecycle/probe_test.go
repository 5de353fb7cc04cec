package lifecycle

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestProbeHTTPStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	up := netip.MustParseAddrPort(srv.Listener.Addr().String())
	p := newProber()
	for path, ready := range map[string]bool{"/ok": true, "redirect": true, "/down": false} {
		if err := p.once(context.Background(), up, path); (err == nil) != ready {
			t.Errorf("probe %s: err %v, want ready=%v", path, err, ready)
		}
	}
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := netip.MustParseAddrPort(ln.Addr().String())
	p := newProber()
	if err := p.once(context.Background(), up, ""); err != nil {
		t.Fatalf("probe of a listening port: %v", err)
	}
	ln.Close()
	closed := netip.MustParseAddrPort(testutil.FreeAddr(t))
	if err := p.once(context.Background(), closed, ""); err == nil {
		t.Fatal("probe of a closed port passed")
	}
}
