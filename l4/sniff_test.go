package l4

import (
	"strings"
	"testing"
)

func TestSniffTLSFindsServerNameInRealClientHello(t *testing.T) {
	hello := captureClientHello(t, "Blog.Example.COM")
	name, done := sniffTLS(hello)
	if !done || name != "blog.example.com" {
		t.Fatalf("sniffTLS = %q, %v; want blog.example.com, true", name, done)
	}
	// Every proper prefix needs more bytes and never guesses a name.
	for i := range len(hello) {
		if name, done := sniffTLS(hello[:i]); done || name != "" {
			t.Fatalf("prefix of %d/%d bytes: %q, %v; want more needed", i, len(hello), name, done)
		}
	}
}

func TestSniffTLSClientHelloSplitAcrossRecords(t *testing.T) {
	hello := captureClientHello(t, "a.example.com")
	for _, size := range []int{1, 3, 7, 100, 512} {
		split := refragment(hello, size)
		if name, done := sniffTLS(split); !done || name != "a.example.com" {
			t.Errorf("records of %d bytes: %q, %v", size, name, done)
		}
		if name, done := sniffTLS(split[:len(split)-1]); done || name != "" {
			t.Errorf("records of %d bytes, last byte missing: %q, %v; want more needed", size, name, done)
		}
	}
}

func TestSniffTLSWithoutServerName(t *testing.T) {
	// An IP address as ServerName: crypto/tls sends no server_name.
	hello := captureClientHello(t, "127.0.0.1")
	if name, done := sniffTLS(hello); !done || name != "" {
		t.Fatalf("sniffTLS = %q, %v; want no name, done", name, done)
	}
}

func TestSniffTLSRejectsNonHandshake(t *testing.T) {
	for _, in := range []string{
		"\x17\x03\x03\x00\x05hello",                // application data first
		"\x16\x02\x00\x00\x05hello",                // not TLS 1.x
		"\x16\x03\x01\x00\x00",                     // empty record
		"\x16\x03\x01\x40\x01",                     // longer than a record may be
		"\x16\x03\x01\x00\x04\x02\x00\x00\x00",     // ServerHello, not ClientHello
		"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", // hello body truncated
	} {
		if name, done := sniffTLS([]byte(in)); !done || name != "" {
			t.Errorf("%q: %q, %v; want no name, done", in, name, done)
		}
	}
}

func TestSniffHTTP(t *testing.T) {
	cases := []struct {
		in   string
		name string
		done bool
	}{
		{"GET / HTTP/1.1\r\nHost: wiki.example.com\r\n\r\n", "wiki.example.com", true},
		{"GET / HTTP/1.1\r\nhOsT:   Wiki.Example.com:8080  \r\n", "wiki.example.com", true},
		{"POST /x HTTP/1.0\nAccept: */*\nHost: a.b\n\n", "a.b", true},
		{"GET / HTTP/1.1\r\nHost: a.example.com.\r\n", "a.example.com", true},
		{"GET / HTTP/1.1\r\nHost: [::1]:80\r\n", "", true},
		{"GET / HTTP/1.1\r\nHost: bad name\r\n", "", true},
		{"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", "", true},
		{"GET / HTTP/1.1\r\nAccept: */*\r\n\r\nHost: late\r\n", "", true},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "", true},
		{"\x00\x00\x00\x08\x04\xd2\x16\x2f", "", true}, // Postgres SSLRequest
		{"get / HTTP/1.1\r\n", "", true},
		{"SSH-2.0-OpenSSH\r\n", "", true},
		{"GET / HTTP/1.1\r\nHost: a.example", "", false},
		{"GET / HTTP/1.1\r\n", "", false},
		{"GET /", "", false},
		{"GET", "", false},
		{"", "", false},
	}
	for _, c := range cases {
		name, done := sniffHTTP([]byte(c.in))
		if name != c.name || done != c.done {
			t.Errorf("%q: %q, %v; want %q, %v", c.in, name, done, c.name, c.done)
		}
	}
}

func TestNameTableMostSpecificWins(t *testing.T) {
	rs := newRouteSet([]Route{
		{App: "exact", Host: []string{"a.example.com"}},
		{App: "wild", Host: []string{"*.example.com"}},
		{App: "deeper", Host: []string{"*.b.example.com", "Upper.Example.com."}},
		{App: "tls", SNI: []string{"a.example.com", "*.example.com"}},
		{App: "default"},
		{App: "second-default"},
	})
	if !rs.peek || rs.def != 4 {
		t.Fatalf("peek = %v, def = %d; want true, 4", rs.peek, rs.def)
	}
	cases := []struct {
		proto peekProto
		name  string
		want  string
	}{
		{protoHTTP, "a.example.com", "exact"},
		{protoHTTP, "x.example.com", "wild"},
		{protoHTTP, "x.y.example.com", "wild"},
		{protoHTTP, "b.example.com", "wild"},
		{protoHTTP, "x.b.example.com", "deeper"},
		{protoHTTP, "x.y.b.example.com", "deeper"},
		{protoHTTP, "upper.example.com", "deeper"},
		{protoHTTP, "example.com", "default"},
		{protoHTTP, "aexample.com", "default"},
		{protoHTTP, "", "default"},
		{protoTLS, "a.example.com", "tls"},
		{protoTLS, "q.example.com", "tls"},
		{protoTLS, "other.org", "default"},
	}
	for _, c := range cases {
		if got := rs.routes[rs.match(c.proto, c.name)].App; got != c.want {
			t.Errorf("%s %q routed to %s, want %s", c.proto, c.name, got, c.want)
		}
	}
	noDefault := newRouteSet([]Route{{App: "only", SNI: []string{"a.example.com"}}})
	if i := noDefault.match(protoTLS, "b.example.com"); i != -1 {
		t.Errorf("no match without default = %d, want -1", i)
	}
	plain := newRouteSet([]Route{{App: "solo"}})
	if plain.peek || plain.def != 0 {
		t.Errorf("single default route: peek = %v, def = %d; want false, 0", plain.peek, plain.def)
	}
}

func TestNameTableLookupAllocatesNothing(t *testing.T) {
	rs := newRouteSet([]Route{{App: "w", SNI: []string{"*.example.com"}}})
	name := strings.Repeat("x.", 20) + "example.com"
	allocs := testing.AllocsPerRun(100, func() {
		if rs.match(protoTLS, name) != 0 {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Errorf("lookup allocates %.0f times", allocs)
	}
}

func FuzzSniffTLS(f *testing.F) {
	hello := captureClientHello(f, "fuzz.example.com")
	f.Add(hello)
	f.Add(refragment(hello, 5))
	f.Add([]byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, done := sniffTLS(b)
		if !done && name != "" {
			t.Fatalf("name %q before done", name)
		}
		if len(name) > maxServerNameLen {
			t.Fatalf("name of %d bytes", len(name))
		}
	})
}

func FuzzSniffHTTP(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a.example.com:80\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: [::1]\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, done := sniffHTTP(b)
		if !done && name != "" {
			t.Fatalf("name %q before done", name)
		}
		if name != strings.ToLower(name) {
			t.Fatalf("name %q not lowercase", name)
		}
	})
}
