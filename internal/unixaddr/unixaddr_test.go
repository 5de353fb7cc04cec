package unixaddr

import "testing"

func TestPathIsWhatFollowsThePrefix(t *testing.T) {
	for addr, want := range map[string]string{
		"unix:/run/app.sock": "/run/app.sock",
		"unix:":              "",
		"127.0.0.1:80":       "",
		"/run/app.sock":      "",
		"UNIX:/run/app.sock": "",
	} {
		if got := Path(addr); got != want {
			t.Errorf("Path(%q) = %q, want %q", addr, got, want)
		}
	}
}
