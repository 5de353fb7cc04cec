package appfile

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yamlTree turns a parsed YAML document into the nested map[string]any the
// decoders read, checking what the parser leaves unchecked: nesting deeper
// than MaxDepth and aliases that expand past MaxAliasBytes. An alias shares
// the value of its anchor rather than copying it (the map is read, never
// written), and its expanded size is charged each time it is used, so that
// the decoders' walks over the map stay bounded too. Duplicate keys are
// found with a map: yaml.v3's own check compares every pair of keys.
type yamlTree struct {
	anchored map[*yaml.Node]yamlValue // converted anchors, for their aliases
	busy     map[*yaml.Node]bool      // anchors being converted
	// What aliases added to the document so far, as if written out.
	aliasedBytes, aliasedItems int
}

// yamlValue is a converted node with what it holds expanded: bytes of
// scalars and keys, items (nodes), and levels of mappings and lists.
type yamlValue struct {
	v      any
	bytes  int
	items  int
	height int
}

// maxAliasedItems bounds the items aliases add: as many as a file can hold
// written out.
const maxAliasedItems = 2 * MaxItems

// yamlError is a problem at a line of the file.
type yamlError struct {
	line int
	msg  string
}

func (e *yamlError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func yamlErrorf(n *yaml.Node, format string, args ...any) error {
	return &yamlError{line: n.Line, msg: fmt.Sprintf(format, args...)}
}

// yamlDocument converts a document node (from yaml.Unmarshal into a
// yaml.Node) whose top level must be a mapping; an empty document or a
// null is an empty mapping.
func yamlDocument(doc *yaml.Node) (map[string]any, error) {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return map[string]any{}, nil
	}
	root := doc.Content[0]
	t := &yamlTree{anchored: map[*yaml.Node]yamlValue{}, busy: map[*yaml.Node]bool{}}
	val, err := t.value(root, 1)
	if err != nil {
		return nil, err
	}
	switch v := val.v.(type) {
	case map[string]any:
		return v, nil
	case nil:
		return map[string]any{}, nil
	}
	return nil, yamlErrorf(root, "expected a mapping of keys at the top level, got %s", kindOf(val.v))
}

// value converts n, found at nesting level depth.
func (t *yamlTree) value(n *yaml.Node, depth int) (yamlValue, error) {
	target := n
	if n.Kind == yaml.AliasNode {
		target = n.Alias
		if target == nil {
			return yamlValue{}, yamlErrorf(n, "unknown anchor %s", Quote(n.Value))
		}
	}
	val, err := t.anchor(target, depth)
	if err != nil {
		return yamlValue{}, err
	}
	if n.Kind == yaml.AliasNode {
		t.aliasedBytes += val.bytes
		t.aliasedItems += val.items
		if t.aliasedBytes > MaxAliasBytes {
			return yamlValue{}, yamlErrorf(n, "aliases expand to more than %d bytes", MaxAliasBytes)
		}
		if t.aliasedItems > maxAliasedItems {
			return yamlValue{}, yamlErrorf(n, "aliases expand to more than %d items", maxAliasedItems)
		}
	}
	if val.height > 0 && depth+val.height-1 > MaxDepth {
		return yamlValue{}, yamlErrorf(n, "nesting deeper than %d levels", MaxDepth)
	}
	return val, nil
}

// anchor converts n once if it has an anchor, and hands back that value
// whenever it is met again: an alias, or the anchor itself when a merge key
// used it before its place in the file.
func (t *yamlTree) anchor(n *yaml.Node, depth int) (yamlValue, error) {
	if n.Anchor == "" {
		return t.convert(n, depth)
	}
	if val, ok := t.anchored[n]; ok {
		return val, nil
	}
	if t.busy[n] {
		return yamlValue{}, yamlErrorf(n, "anchor %s contains an alias of itself", Quote(n.Anchor))
	}
	t.busy[n] = true
	val, err := t.convert(n, depth)
	delete(t.busy, n)
	if err == nil {
		t.anchored[n] = val
	}
	return val, err
}

func (t *yamlTree) convert(n *yaml.Node, depth int) (yamlValue, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := yamlScalar(n)
		return yamlValue{v: v, bytes: len(n.Value), items: 1}, err
	case yaml.SequenceNode:
		if depth > MaxDepth {
			return yamlValue{}, yamlErrorf(n, "nesting deeper than %d levels", MaxDepth)
		}
		out := yamlValue{items: 1, height: 1}
		list := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			e, err := t.value(c, depth+1)
			if err != nil {
				return yamlValue{}, err
			}
			list = append(list, e.v)
			out.add(e)
		}
		out.v = list
		return out, nil
	case yaml.MappingNode:
		return t.mapping(n, depth)
	case yaml.AliasNode:
		return t.value(n, depth)
	}
	return yamlValue{}, yamlErrorf(n, "unexpected YAML node")
}

// add counts child e into its parent v.
func (v *yamlValue) add(e yamlValue) {
	v.bytes += e.bytes
	v.items += e.items
	v.height = max(v.height, e.height+1)
}

func (t *yamlTree) mapping(n *yaml.Node, depth int) (yamlValue, error) {
	if depth > MaxDepth {
		return yamlValue{}, yamlErrorf(n, "nesting deeper than %d levels", MaxDepth)
	}
	out := yamlValue{items: 1, height: 1}
	m := make(map[string]any, len(n.Content)/2)
	lines := make(map[string]int, len(n.Content)/2)
	var merge *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if isMergeKey(kn) {
			if merge != nil {
				return yamlValue{}, yamlErrorf(kn, "merge key << is already used at line %d", merge.Line)
			}
			merge = vn
			continue
		}
		key, err := t.key(kn, depth)
		if err != nil {
			return yamlValue{}, err
		}
		if line, dup := lines[key]; dup {
			return yamlValue{}, yamlErrorf(kn, "key %s is already defined at line %d", Quote(key), line)
		}
		lines[key] = kn.Line
		e, err := t.value(vn, depth+1)
		if err != nil {
			return yamlValue{}, err
		}
		m[key] = e.v
		out.bytes += len(key)
		out.items++
		out.add(e)
	}
	if merge != nil {
		if err := t.merge(m, &out, merge, depth); err != nil {
			return yamlValue{}, err
		}
	}
	out.v = m
	return out, nil
}

// key converts a mapping key: a scalar (or an alias of one), as written.
func (t *yamlTree) key(kn *yaml.Node, depth int) (string, error) {
	target := kn
	if kn.Kind == yaml.AliasNode {
		val, err := t.value(kn, depth)
		if err != nil {
			return "", err
		}
		target = kn.Alias
		if _, isList := val.v.([]any); isList {
			return "", yamlErrorf(kn, "expected a key (a string), got a list")
		}
	}
	if target.Kind != yaml.ScalarNode {
		what := "a list"
		if target.Kind == yaml.MappingNode {
			what = "a mapping"
		}
		return "", yamlErrorf(kn, "expected a key (a string), got %s", what)
	}
	return target.Value, nil
}

// isMergeKey reports a YAML merge key, <<, as yaml.v3 recognises it.
func isMergeKey(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "<<" && (n.Tag == "" || n.Tag == "!" || n.ShortTag() == "!!merge")
}

// merge adds the entries of a merge key's mapping, or list of mappings, to
// m, as yaml.v3 does: keys written in the mapping win, then the first
// mapping listed.
func (t *yamlTree) merge(m map[string]any, out *yamlValue, src *yaml.Node, depth int) error {
	sources := []*yaml.Node{src}
	if src.Kind == yaml.SequenceNode {
		sources = src.Content
	}
	for _, s := range sources {
		val, err := t.value(s, depth)
		if err != nil {
			return err
		}
		from, ok := val.v.(map[string]any)
		if !ok {
			return yamlErrorf(s, "merge key << expects a mapping or a list of mappings, got %s", kindOf(val.v))
		}
		for k, v := range from {
			if _, set := m[k]; !set {
				m[k] = v
			}
		}
		out.bytes += val.bytes
		out.items += val.items
		out.height = max(out.height, val.height)
	}
	return nil
}

// yamlScalar converts a scalar as yaml.v3 decodes it into an any: a string,
// nil, a bool, an int, a float64, a time.Time...
func yamlScalar(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!str":
		return n.Value, nil
	case "!!null":
		return nil, nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, yamlErrorf(n, "invalid YAML: %s", libraryMessage(strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	return v, nil
}
