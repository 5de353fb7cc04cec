package appfile

import (
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestYAMLTreeDecodesAsYAMLv3 checks that yamlTree gives the values
// yaml.v3's own decoding into a map gives: scalars of every type, aliases,
// merge keys with their precedence.
func TestYAMLTreeDecodesAsYAMLv3(t *testing.T) {
	docs := []string{
		"s: text\nq: 'quoted'\ni: 42\nneg: -7\nhex: 0x1F\nbig: 123456789012345678901234\nf: 1.5\nb: true\nn: null\ntilde: ~\nempty:\nts: 2031-05-17T09:41:27Z\nd: 2031-05-17\nbin: !!binary aGVsbG8=\nstr: !!str 12\n",
		"base: &b {a: 1, b: 2}\nlist: &l [x, y]\nuse: *b\nuses: [*l, *l]\n",
		"base: &b {a: 1, b: 2}\nm: {<<: *b, b: 3, c: 4}\n",
		"x: &x {a: 1}\ny: &y {a: 2, b: 2}\nm: {<<: [*x, *y], c: 3}\n",
		"m:\n  <<: {a: 1}\n  a: 0\n",
		"k: &k key\nm: {*k : v}\n",
		"nested: {a: [1, {b: [2, 3]}], c: {d: {e: f}}}\n",
		"multi: |\n  line one\n  line two\nfolded: >\n  a\n  b\n",
	}
	for _, doc := range docs {
		var want map[string]any
		if err := yaml.Unmarshal([]byte(doc), &want); err != nil {
			t.Fatalf("yaml.v3: %v\n%s", err, doc)
		}
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
			t.Fatal(err)
		}
		got, err := yamlDocument(&node)
		if err != nil {
			t.Errorf("yamlTree: %v\n%s", err, doc)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("yamlTree gives\n%#v\nyaml.v3 gives\n%#v\nfor\n%s", got, want, doc)
		}
	}
}

// TestYAMLTreeRefuses covers what yamlTree refuses, each with its line.
func TestYAMLTreeRefuses(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"a: 1\nb: 2\na: 3\n", `line 3: key "a" is already defined at line 1`},
		{"a: &a [1, *a]\n", `line 1: anchor "a" contains an alias of itself`},
		{"? [1, 2]\n: x\n", "line 1: expected a key (a string), got a list"},
		{"? {a: 1}\n: x\n", "line 1: expected a key (a string), got a mapping"},
		{"- a\n- b\n", "line 1: expected a mapping of keys at the top level, got a list"},
		{"just text\n", "line 1: expected a mapping of keys at the top level, got a string"},
		{"m: {<<: 1}\n", "line 1: merge key << expects a mapping or a list of mappings, got an integer"},
		{"m: {<<: {a: 1}, <<: {b: 2}}\n", "line 1: merge key << is already used at line 1"},
		{"a: " + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + "\n", "line 1: nesting deeper than 16 levels"},
		{"deep: &d " + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1) + "\nok: *d\nno: [*d]\n", "line 3: nesting deeper than 16 levels"},
		{"i: !!int x\n", "line 1: invalid YAML:"},
	}
	for _, c := range cases {
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(c.doc), &node); err != nil {
			t.Fatalf("yaml.v3: %v\n%s", err, c.doc)
		}
		_, err := yamlDocument(&node)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("error %v, want %q, for\n%s", err, c.want, c.doc)
		}
	}
	var empty yaml.Node
	if m, err := yamlDocument(&empty); err != nil || m == nil || len(m) != 0 {
		t.Errorf("empty document: %v, %v; want an empty mapping", m, err)
	}
}
