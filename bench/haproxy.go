package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// haproxyProc is HAProxy in TCP mode with two threads, one frontend per
// warm-path backend, started as a child of the benchmark.
type haproxyProc struct {
	cmd    *exec.Cmd
	config string
}

// haproxyConfig is the generated configuration: listens maps a listen
// address to the backend address it forwards to.
func haproxyConfig(listens [][2]string) string {
	var b strings.Builder
	b.WriteString(`global
    nbthread 2
    maxconn 8000

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
`)
	for i, l := range listens {
		fmt.Fprintf(&b, "\nlisten p%d\n    bind %s\n    server s%d %s\n", i, l[0], i, l[1])
	}
	return b.String()
}

func startHAProxy(dir string, listens [][2]string) (*haproxyProc, error) {
	h := &haproxyProc{config: haproxyConfig(listens)}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(h.config), 0o644); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	h.cmd = exec.Command("haproxy", "-db", "-f", path)
	h.cmd.Stdout, h.cmd.Stderr = log, log
	if err := h.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting haproxy: %w", err)
	}
	for _, l := range listens {
		if err := waitDial(l[0], 10*time.Second); err != nil {
			h.stop()
			data, _ := os.ReadFile(filepath.Join(dir, "haproxy.log"))
			return nil, fmt.Errorf("haproxy did not listen on %s: %w\n%s", l[0], err, data)
		}
	}
	return h, nil
}

func (h *haproxyProc) pid() int { return h.cmd.Process.Pid }

func (h *haproxyProc) stop() { terminate(h.cmd, 10*time.Second) }
