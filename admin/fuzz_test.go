package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzHandler sends arbitrary methods, paths and query strings through the
// real routes: no panic, and no 5xx for a request that is merely bad.
func FuzzHandler(f *testing.F) {
	for _, seed := range [][3]string{
		{"GET", "/v1/apps", ""},
		{"GET", "/v1/apps/web", ""},
		{"POST", "/v1/apps/web/start", ""},
		{"POST", "/v1/apps/nope/restart", ""},
		{"GET", "/v1/apps/web/logs", "n=-1"},
		{"GET", "/v1/apps/web/logs", "n=99999999999999999999&f=1"},
		{"DELETE", "/v1/apps/%2e%2e/logs", "n=x"},
		{"GET", "/v1/apps/../../etc/passwd/logs", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	s, _, _ := startServer(f, newTestController("web", "db"))
	h := s.routes()
	f.Fuzz(func(t *testing.T, method, path, query string) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") {
			return // net/http refuses these before any handler runs
		}
		u := &url.URL{Path: path, RawQuery: query}
		req, err := http.NewRequest(method, "http://dynapm"+u.RequestURI(), nil)
		if err != nil {
			return
		}
		// logs -f follows until the client goes: a short context ends it.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		if rec.Code >= 500 {
			t.Fatalf("%s %s?%s: status %d: %s", method, path, query, rec.Code, rec.Body)
		}
	})
}

// validMethod reports whether m is an HTTP token, as net/http requires.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}
