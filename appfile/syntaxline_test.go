package appfile

import (
	"path/filepath"
	"strings"
	"testing"
)

// Syntax errors name the line the problem is on, counted from 1, in
// YAML (whose parser counts some from 0) as in TOML and JSON.
func TestSyntaxErrorsNameTheLineOfTheProblem(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, content, want string }{
		{"bracket.yaml", "listen: x\ncommand: [a\n", "invalid YAML: line 2: did not find expected ',' or ']'"},
		{"brace.yaml", "listen: x\nenv: {A: b\n", "invalid YAML: line 2: did not find expected ',' or '}'"},
		{"first.yaml", "command: [a\n", "invalid YAML: line 1: did not find expected ',' or ']'"},
		{"tab.yaml", "listen: x\ncommand: a\nenv:\n  A: b\nidle_timeout: 1m\n\tmode: x\n", "invalid YAML: line 6: found a tab character that violates indentation"},
		{"tab3.yaml", "listen: x\ncommand: a\n\tmode: x\n", "invalid YAML: line 3: found a tab character that violates indentation"},
		{"dash.yaml", "- a\nlisten: x\n", "invalid YAML: line 2: did not find expected '-' indicator"},
		{"key.yaml", "listen: x\n- b\n", "invalid YAML: line 2: did not find expected key"},
		{"indent.yaml", "env:\n  A: b\n B: c\n", "invalid YAML: line 3: did not find expected key"},
		{"colon.yaml", "listen: x\ncommand\nmode: always\n", "invalid YAML: line 2: could not find expected ':'"},
		{"token.yaml", "listen: x\ncommand: @x\n", "invalid YAML: line 2: found character that cannot start any token"},
		{"mapping.yaml", "listen: x\n  command: d\n", "invalid YAML: line 2: mapping values are not allowed in this context"},
		{"quote.yaml", "listen: x\ncommand: \"a\n", "invalid YAML: line 2: found unexpected end of stream"},
		{"dupkey.yaml", "listen: x\ncommand: a\nlisten: y\n", "line 3: key \"listen\" is already defined at line 1"},
		{"bracket.toml", "listen = \"x\"\ncommand = [\"a\"\n", "invalid TOML: line 3, column 1: expected character ] but the document ended here"},
		{"value.toml", "listen = \"x\"\ncommand = \n", "invalid TOML: line 2, column 11:"},
		{"dupkey.toml", "listen = \"x\"\ncommand = \"a\"\nlisten = \"y\"\n", "invalid TOML: line 3: key listen is already defined"},
		{"table.toml", "listen = \"x\"\n[env]\nA = \"1\"\n\n[env]\nB = \"2\"\n", "invalid TOML: line 5: table env already exists"},
		{"dotted.toml", "listen = \"x\"\nenv = \"a\"\nenv.B = \"2\"\n", "invalid TOML: line 3:"},
		{"bracket.json", "{\"listen\": \"x\",\n \"command\": [\"a\"\n", "invalid JSON: line 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			_, err := Parse(p, []byte(c.content))
			if err == nil || !strings.HasPrefix(err.Error(), p+": "+c.want) {
				t.Errorf("error = %v\nwant it to start %q", err, p+": "+c.want)
			}
		})
	}
}
