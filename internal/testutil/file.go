package testutil

import (
	"os"
	"testing"
)

// WriteFile writes content to path, readable by all (mode 0644, before the
// umask), as an app file or a settings file is written by hand.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
