package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Building the daemon for another system fails at load time with the one
// line that names internal/linuxonly (see linuxonly.go), and nothing else:
// no compile errors from the Linux-only packages below it.
func TestOtherSystemsStopWithOneLineSayingLinuxOnly(t *testing.T) {
	for _, goos := range []string{"darwin", "windows", "freebsd"} {
		// Seconds at most: a load error stops the go command before it
		// compiles anything for goos.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", os.DevNull, ".")
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			t.Errorf("GOOS=%s: the build succeeded", goos)
			continue
		}
		const want = "imports github.com/dynapm/dynapm/internal/linuxonly: build constraints exclude all Go files"
		if !strings.Contains(string(out), want) {
			t.Errorf("GOOS=%s: the build failed without %q:\n%s", goos, want, out)
		}
		if strings.Contains(string(out), "undefined") {
			t.Errorf("GOOS=%s: the build got as far as compiling:\n%s", goos, out)
		}
	}
}
