package appfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFile creates dir/name with content and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fieldErrors unpacks the errors Parse joined, failing on anything that is
// not a *FieldError.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	for _, e := range split(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v (%T) is not a *FieldError", e, e)
		}
		out = append(out, fe)
	}
	return out
}

// requireFieldError asserts that err holds an error for field whose text
// names the file, the field and contains want.
func requireFieldError(t *testing.T, err error, file, field, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error on %q containing %q, got none", field, want)
	}
	for _, fe := range fieldErrors(t, err) {
		if fe.Field != field {
			continue
		}
		text := fe.Error()
		prefix := file + ": "
		if field != "" {
			prefix += field + ": "
		}
		if !strings.HasPrefix(text, prefix) {
			t.Errorf("error %q does not start with %q", text, prefix)
		}
		if !strings.Contains(text, want) {
			t.Errorf("error %q does not contain %q", text, want)
		}
		if strings.Contains(text, "\n") {
			t.Errorf("error %q spans lines; check prints one line per problem", text)
		}
		return
	}
	t.Fatalf("no error on field %q (want %q); got: %v", field, want, err)
}
