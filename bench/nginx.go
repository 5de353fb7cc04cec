package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// nginxStreamModule is where Debian's libnginx-mod-stream puts the stream
// module that nginx loads at start.
const nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// nginxProc is nginx with its stream module proxying UDP, started as a
// child of the benchmark (master and workers; the workers do the work).
type nginxProc struct {
	cmd    *exec.Cmd
	config string
}

// nginxConfig is the generated configuration: workers processes (as many
// as DynaPM's event loops), each with a socket of its own on every listen
// address (reuseport, so that the kernel spreads clients over them rather
// than waking every worker for each datagram), and sessions that last as
// long as DynaPM's flows (proxy_timeout as udp_flow_timeout's default;
// proxy_responses unset: any number of replies per datagram, as an echo,
// a game or a VPN needs). listens maps a listen address to its upstream.
func nginxConfig(dir string, workers int, listens [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `load_module %s;
daemon off;
worker_processes %d;
pid %s;
error_log %s warn;

events {
    worker_connections 8192;
}

stream {
`, nginxStreamModule, workers, filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "nginx.log"))
	for _, l := range listens {
		fmt.Fprintf(&b, `    server {
        listen %s udp reuseport;
        proxy_pass %s;
        proxy_timeout 60s;
    }
`, l[0], l[1])
	}
	b.WriteString("}\n")
	return b.String()
}

// startNginx runs nginx on the generated configuration and waits until
// every worker has started.
func startNginx(dir string, workers int, listens [][2]string) (*nginxProc, error) {
	n := &nginxProc{config: nginxConfig(dir, workers, listens)}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(n.config), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "nginx.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	// -e: the log before the configuration's error_log applies (Debian's
	// default is under /var/log); -p: relative paths under dir.
	n.cmd = exec.Command("nginx", "-p", dir, "-e", logPath, "-c", path)
	n.cmd.Stdout, n.cmd.Stderr = log, log
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting nginx: %w", err)
	}
	if err := pollUntil(10*time.Second, func() bool { return len(n.pids()) == workers+1 }); err != nil {
		n.stop()
		data, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("nginx did not start %d workers: %w\n%s", workers, err, data)
	}
	return n, nil
}

// pids are the master's and its workers'.
func (n *nginxProc) pids() []int {
	pid := n.cmd.Process.Pid
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return append([]int{pid}, parseChildren(string(data))...)
}

// parseChildren reads /proc/PID/task/TID/children: pids separated by
// spaces.
func parseChildren(s string) []int {
	var pids []int
	for _, f := range strings.Fields(s) {
		if n, err := strconv.Atoi(f); err == nil && n > 0 {
			pids = append(pids, n)
		}
	}
	return pids
}

func (n *nginxProc) stop() { terminate(n.cmd, 10*time.Second) }
