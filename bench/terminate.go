package main

import (
	"os/exec"
	"syscall"
	"time"
)

// terminate sends cmd's process SIGTERM, waits for it, and kills it when it
// has not ended within grace.
func terminate(cmd *exec.Cmd, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}
