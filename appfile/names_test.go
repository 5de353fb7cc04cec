package appfile

import "testing"

func TestIsAppFile(t *testing.T) {
	cases := map[string]bool{
		"web.yaml": true, "web.yml": true, "web.toml": true, "web.json": true,
		"my_app-2.yaml": true, "0.json": true,
		"Web.yaml": false, "-web.yaml": false, "_web.yaml": false, "web.app.yaml": false,
		"web.YAML": false, "web.txt": false, "web": false, "README.md": false, "": false,
		".web.yaml": false, ".#web.yaml": false, "web.yaml~": false,
		"web.yaml.swp": false, ".web.yaml.swp": false, "web.yaml.swx": false,
		"web.yaml.tmp": false, "4913": false, "..data": false, "..2024_01_01_00_00_00.123": false,
	}
	for name, want := range cases {
		if got := IsAppFile(name); got != want {
			t.Errorf("IsAppFile(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestValidHostname(t *testing.T) {
	cases := map[string]bool{
		"a.example.com": true, "*.example.com": true, "localhost": true, "x-1.io": true, "127.0.0.1": true,
		"A.com": false, "*": false, "a.*.com": false, "-a.com": false, "a-.com": false,
		"a..com": false, "a.com.": false, "a_b.com": false, "": false, "*.": false,
	}
	for name, want := range cases {
		if got := validHostname(name, true); got != want {
			t.Errorf("validHostname(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestListenKey(t *testing.T) {
	cases := map[string]string{
		":80": "*:80", "0.0.0.0:80": "*:80", "[::]:80": "*:80",
		"localhost:80": "127.0.0.1:80", "LOCALHOST:80": "127.0.0.1:80", "127.0.0.1:80": "127.0.0.1:80",
		"[::1]:80": "[::1]:80", "[0:0::1]:80": "[::1]:80", "[::ffff:10.0.0.1]:80": "10.0.0.1:80",
		"bad": "bad",
	}
	for in, want := range cases {
		if got := ListenKey(in); got != want {
			t.Errorf("ListenKey(%q) = %q, want %q", in, got, want)
		}
	}
}
