package appfile

import (
	"strings"
	"testing"
)

// An environment value of the wrong type is reported by its variable and
// the type found, never by its value: the error goes to the daemon's log,
// and env is where secrets live.
func TestEnvErrorsNameTheKeyAndTypeNeverTheValue(t *testing.T) {
	for _, tc := range []struct {
		name, file, field, secret, want string
	}{
		{"fraction", "a.yaml", "env.RATIO", "31415.92653", "expected a string, got a number with a fraction (quote the value)"},
		{"large number", "a.yaml", "env.PIN", "123456789012345678901234", "expected a string, got a large number (quote the value)"},
		{"timestamp", "a.yaml", "env.SINCE", "2031-05-17T09:41:27Z", "expected a string, got a timestamp (quote the value)"},
		{"list", "a.yaml", "env.KEYS", "[hunter2, s3cr3t]", "expected a string, got a list (quote the value)"},
		{"mapping", "a.yaml", "env.DB", "{password: s3cr3t}", "expected a string, got a mapping (quote the value)"},
		{"toml timestamp", "a.toml", "env.SINCE", "2031-05-17T09:41:27Z", "expected a string, got a timestamp (quote the value)"},
		{"json fraction", "a.json", "env.RATIO", "31415.92653", "expected a string, got a number with a fraction (quote the value)"},
		{"env not a mapping", "a.yaml", "env", `"API_TOKEN=s3cr3t"`, "expected a mapping of NAME: value, got a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := strings.TrimPrefix(tc.field, "env.")
			var data string
			switch {
			case tc.field == "env":
				data = "listen: ':1001'\ncommand: [./srv]\nenv: " + tc.secret + "\n"
			case strings.HasSuffix(tc.file, ".toml"):
				data = "listen = ':1001'\ncommand = ['./srv']\n[env]\n" + key + " = " + tc.secret + "\n"
			case strings.HasSuffix(tc.file, ".json"):
				data = `{"listen": ":1001", "command": ["./srv"], "env": {"` + key + `": ` + tc.secret + `}}`
			default:
				data = "listen: ':1001'\ncommand: [./srv]\nenv: {" + key + ": " + tc.secret + "}\n"
			}
			_, err := Parse(tc.file, []byte(data))
			requireFieldError(t, err, tc.file, tc.field, tc.want)
			// Not the value, nor any piece of it a parser may have kept.
			for _, part := range strings.FieldsFunc(tc.secret, func(r rune) bool { return strings.ContainsRune(`[]{}:, "=`, r) }) {
				if len(part) >= 4 && part != "password" && strings.Contains(err.Error(), part) {
					t.Errorf("error %q holds %q from the value", err, part)
				}
			}
		})
	}
}
