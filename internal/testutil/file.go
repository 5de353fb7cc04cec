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

// Nobody is the uid and gid of the account the ownership tests give files
// to: it exists on every system the tests run on as root (nobody, group
// nogroup).
const Nobody = 65534

// ChownNobody gives path to nobody, as if that user had written it.
func ChownNobody(t testing.TB, path string) {
	t.Helper()
	if err := os.Chown(path, Nobody, Nobody); err != nil {
		t.Fatal(err)
	}
}
