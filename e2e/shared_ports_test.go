package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// hostApp is an app file for an HTTP testapp greeting with greeting, on
// listen shared by the Host names in hosts (a YAML list).
func hostApp(t *testing.T, listen, greeting, hosts string) string {
	return fmt.Sprintf("listen: %q\nmatch: {host: %s}\ncommand: [%q, \"-mode\", \"http\"]\nenv: {GREETING: %s}\nidle_timeout: 10s\nstart_timeout: 20s\nstop_timeout: 2s\n",
		listen, hosts, testutil.TestApp(t), greeting)
}

// getHost asks addr for / with the Host header host on a fresh connection
// (routing is per connection) and returns the body, or the error.
func getHost(addr, host string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func TestDaemonRoutesTwoAppsOnOneAddressByHost(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "wiki.yaml"), hostApp(t, listen, "wiki", "[wiki.example.test]"))
	testutil.WriteFile(t, filepath.Join(apps, "blog.yaml"), hostApp(t, listen, "blog", "[blog.example.test]"))
	d := startDaemon(t, apps)

	for _, c := range []struct{ host, want string }{
		{"wiki.example.test", "ok wiki"},
		{"blog.example.test:80", "ok blog"},
		{"WIKI.example.test", "ok wiki"},
	} {
		got, err := getHost(listen, c.host)
		if err != nil || got != c.want {
			t.Errorf("Host %s: %q, %v; want %q", c.host, got, err, c.want)
		}
	}
	if got, err := getHost(listen, "nobody.example.test"); err == nil {
		t.Errorf("unmatched Host answered %q; want the connection closed", got)
	}

	// Hot reload: blog takes a wildcard too, on the same listener.
	testutil.WriteFile(t, filepath.Join(apps, "blog.yaml"), hostApp(t, listen, "blog", "[blog.example.test, '*.blog.example.test']"))
	testutil.Eventually(t, 20*time.Second, func() bool {
		got, _ := getHost(listen, "new.blog.example.test")
		return got == "ok blog"
	}, "new.blog.example.test never reached blog after the reload; output:\n%s", d.out)
	if got, err := getHost(listen, "wiki.example.test"); err != nil || got != "ok wiki" {
		t.Errorf("wiki after the reload: %q, %v", got, err)
	}
}
