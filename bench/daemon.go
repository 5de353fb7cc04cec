package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// daemonProc is one running dynapm daemon with its own apps.d and log.
type daemonProc struct {
	cmd     *exec.Cmd
	apps    string
	logPath string
	started time.Time
}

// startDaemon runs bin on the apps in dir (already written) and waits
// until it logs that it is ready; the returned duration is exec to ready.
func startDaemon(bin, dir string, limit time.Duration) (*daemonProc, time.Duration, error) {
	d := &daemonProc{apps: filepath.Join(dir, "apps.d"), logPath: filepath.Join(dir, "daemon.log")}
	log, err := os.Create(d.logPath)
	if err != nil {
		return nil, 0, err
	}
	defer log.Close()
	d.cmd = exec.Command(bin, "run", "-apps", d.apps, "-state", filepath.Join(dir, "state"))
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("starting dynapm: %w", err)
	}
	deadline := d.started.Add(limit)
	for {
		data, _ := os.ReadFile(d.logPath)
		if bytes.Contains(data, []byte(`msg="dynapm ready"`)) {
			return d, time.Since(d.started), nil
		}
		if d.cmd.ProcessState != nil || syscall.Kill(d.cmd.Process.Pid, 0) != nil || time.Now().After(deadline) {
			d.stop()
			return nil, 0, fmt.Errorf("dynapm did not get ready within %s; its log:\n%s", limit, tail(data, 2000))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (d *daemonProc) pid() int { return d.cmd.Process.Pid }

// stop ends the daemon (which stops its apps) and waits for it.
func (d *daemonProc) stop() { terminate(d.cmd, 40*time.Second) }

// count returns how often the daemon logged msg for app.
func (d *daemonProc) count(msg, app string) int {
	data, _ := os.ReadFile(d.logPath)
	n := 0
	needle := fmt.Sprintf(`msg=%q app=%s `, msg, app)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line+" ", needle) {
			n++
		}
	}
	return n
}

// waitStopped waits until every start of app has been followed by a stop,
// so that the next connection is a cold wake.
func (d *daemonProc) waitStopped(app string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for d.count("app started", app) != d.count("app stopped", app) {
		if time.Now().After(deadline) {
			return fmt.Errorf("app %s still running after %s", app, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// app is one app file the benchmark writes.
type app struct {
	name, listen, upstream string
	command                []string
	shell                  string // instead of command: a string run by /bin/sh -c
	extra                  string // more YAML lines
}

func (a app) write(dir string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\n", a.listen)
	if a.upstream != "" {
		fmt.Fprintf(&b, "upstream: %q\n", a.upstream)
	}
	if a.shell != "" {
		fmt.Fprintf(&b, "command: %q\n", a.shell)
	} else {
		b.WriteString("command: [")
		for i, s := range a.command {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", s)
		}
		b.WriteString("]\n")
	}
	b.WriteString(a.extra)
	return os.WriteFile(filepath.Join(dir, a.name+".yaml"), []byte(b.String()), 0o644)
}
