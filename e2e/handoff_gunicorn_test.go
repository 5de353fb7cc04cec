package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dynapm/dynapm/internal/testutil"
)

// helloWSGI is the app gunicorn serves: it answers with its master's pid,
// and /slow takes two seconds after marking that it began.
const helloWSGI = `import os, time

def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        open(os.environ["SLOW_MARK"], "w").close()
        time.sleep(2)
    body = ("master=%d\n" % os.getppid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

// cpuTicks is the user and system time pid has used, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return utime + stime
}

// TestGunicornRecipeTakesItsSocketFromDynaPM runs the README's gunicorn
// recipe (handoff: socket): the first request to the stopped app is
// answered, requests then cost the daemon nothing (it is not on their
// path), the app stops when idle and the next request wakes it, and a
// request made while it stops is served by the next start.
func TestGunicornRecipeTakesItsSocketFromDynaPM(t *testing.T) {
	needPrograms(t, "gunicorn", "/usr/bin/gunicorn")
	dir := t.TempDir()
	testutil.WriteFile(t, filepath.Join(dir, "hello.py"), helloWSGI)
	mark := filepath.Join(t.TempDir(), "slow")
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "hello.yaml"), replaceAll(t, recipeBlocks(t, "Gunicorn, with the socket handed off")[0],
		"/srv/hello", dir,
		`"127.0.0.1:8000"`, strconv.Quote(listen),
		"idle_timeout: 10m", "idle_timeout: 1s\nstart_timeout: 60s\nenv: {SLOW_MARK: "+strconv.Quote(mark)+"}"))
	d := startDaemon(t, apps, "-state", state)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: recipeWait}
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get("http://" + listen + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "master=") {
			t.Fatalf("GET %s: %s %q %v", path, resp.Status, body, err)
		}
		return strings.TrimSpace(string(body))
	}

	master := get("/")
	if pid, _ := statusOf(t, state, "hello")["pid"].(float64); "master="+strconv.Itoa(int(pid)) != master {
		t.Fatalf("answered by %s, the app's program is pid %v", master, pid)
	}

	// Under load, the daemon's CPU time does not grow: gunicorn accepts
	// from the socket itself.
	before := cpuTicks(t, d.cmd.Process.Pid)
	const requests, clients = 400, 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for range clients {
		wg.Go(func() {
			for range requests / clients {
				resp, err := client.Get("http://" + listen + "/")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed: %s", len(failed), requests, failed[0])
	}
	used := cpuTicks(t, d.cmd.Process.Pid) - before
	t.Logf("the daemon used %d clock ticks over %d requests", used, requests)
	if used > 10 {
		t.Errorf("the daemon used %d clock ticks over %d requests: it is on their path", used, requests)
	}

	// Idle: it stops, nothing of it is left, and the next request wakes it.
	d.waitLog(t, `msg="app stopped"`, "app=hello", "reason=idle")
	if left := processesOf(-1, dir, dir); len(left) > 0 {
		t.Fatalf("gunicorn processes left after the idle stop:\n%s", strings.Join(left, "\n"))
	}
	woken := get("/")
	if woken == master {
		t.Fatalf("after the idle stop, still served by %s", master)
	}

	// A request made while it stops (a slow request keeps gunicorn's
	// graceful stop going) waits in the backlog for the next start.
	slow := make(chan string, 1)
	go func() {
		resp, err := client.Get("http://" + listen + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		slow <- resp.Status + " " + strings.TrimSpace(string(body))
	}()
	testutil.Eventually(t, recipeWait, func() bool { _, err := os.Stat(mark); return err == nil },
		"the slow request did not begin:\n%s", d.out)
	stopped := make(chan string, 1)
	go func() { _, out, _ := dynapm(t, "stop", "hello", "-state", state); stopped <- out }()
	testutil.Eventually(t, recipeWait, func() bool { return statusOf(t, state, "hello")["state"] == "stopping" },
		"the app did not begin to stop:\n%s", d.out)
	during := get("/")
	if during == woken {
		t.Fatalf("the request made while stopping was served by the stopping %s", woken)
	}
	if got := <-slow; got != "200 OK "+woken {
		t.Errorf("the slow request, cut by the stop? got %q, want 200 from %s", got, woken)
	}
	if out := <-stopped; !strings.HasPrefix(out, "hello: stopped") {
		t.Errorf("dynapm stop: %q", out)
	}
}
