package appfile

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestExecSizeBound refuses what exec would refuse: command and env past
// MaxExecBytes together, in every place a command is run.
func TestExecSizeBound(t *testing.T) {
	big := strings.Repeat("x", MaxExecBytes)
	cases := []struct{ name, yaml, field string }{
		{"command string", "listen: ':1'\ncommand: " + big + "\n", "command"},
		{"command words", "listen: ':1'\ncommand: [echo, " + big[:MaxExecBytes/2] + ", " + big[:MaxExecBytes/2] + "]\n", "command"},
		{"env", "listen: ':1'\ncommand: x\nenv: {A: " + big + "}\n", "env"},
		{"command and env", "listen: ':1'\ncommand: " + big[:MaxExecBytes/2] + "\nenv: {A: " + big[:MaxExecBytes/2] + "}\n", "command"},
		{"job", "listen: ':1'\ncommand: x\njobs: [{cron: '@daily', command: " + big + "}]\n", "jobs[0].command"},
		{"start", "listen: ':1'\ndriver: command\nupstream: 127.0.0.1:2\nstop: x\nstart: " + big + "\n", "start"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "web.yaml")
			_, err := Parse(p, []byte(c.yaml))
			requireFieldError(t, err, p, c.field, fmt.Sprintf("expected at most %d bytes", MaxExecBytes))
		})
	}
	// At the bound: "/bin/sh", "-c" and the string, each with its NUL.
	p := filepath.Join(t.TempDir(), "web.yaml")
	fits := big[:MaxExecBytes-len("/bin/sh")-len("-c")-3]
	if _, err := Parse(p, []byte("listen: ':1'\ncommand: "+fits+"\n")); err != nil {
		t.Errorf("a command of exactly %d bytes: %v", MaxExecBytes, err)
	}
	if _, err := Parse(p, []byte("listen: ':1'\ncommand: "+fits+"x\n")); err == nil {
		t.Errorf("a command of %d bytes accepted", MaxExecBytes+1)
	}
}
