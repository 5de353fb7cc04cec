package e2e

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// reloadWait bounds waits for a reload; the debounce is 50ms, so this is
// generous for a loaded machine.
const reloadWait = 15 * time.Second

// pidIn returns the pid in path, or 0 if there is none (yet), or it is not
// fully written.
func pidIn(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
