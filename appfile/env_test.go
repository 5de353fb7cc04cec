package appfile

import "testing"

func TestExpandPort(t *testing.T) {
	for in, want := range map[string]string{
		"${PORT}":          "8080",
		"$PORT":            "8080",
		"127.0.0.1:$PORT/": "127.0.0.1:8080/",
		"$PORTS ${PORT}x":  "$PORTS 8080x",
		"pa$$word $HOME":   "pa$$word $HOME",
		"${PORT":           "${PORT",
		"no dollar":        "no dollar",
	} {
		if got := ExpandPort(in, 8080); got != want {
			t.Errorf("ExpandPort(%q) = %q, want %q", in, got, want)
		}
	}
}
