package appfile

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
)

// Bounds on a file's structure. The parsers' time and memory grow with the
// number of items and with nesting, quadratically in places, so these are
// checked on the bytes before a parser builds anything. An app file needs a
// few hundred items nested four levels deep.
const (
	// MaxDepth is the deepest nesting of mappings and lists, the top-level
	// mapping being level 1.
	MaxDepth = 16
	// MaxItems bounds the bytes that may start or separate an item (a
	// comma, a bracket, a colon...): each item needs one, so a file holds
	// at most about twice as many items.
	MaxItems = 8192
	// MaxAliasBytes bounds the bytes YAML aliases add to a file once
	// expanded (and they add at most 2*MaxItems items): a short file of
	// aliases to aliases (the "billion laughs") otherwise expands to
	// gigabytes.
	MaxAliasBytes = 1 << 20
)

// checkShape refuses data whose items or nesting would cost a parser more
// than the bounds allow. It runs on the bytes alone, in one pass, and errs
// on the side of counting: a byte that may be structure counts even where
// the parser would read it as text. The message names the line.
func checkShape(format string, data []byte) string {
	switch format {
	case "JSON":
		return scanBrackets(data, false)
	case "TOML":
		return scanBrackets(data, true)
	}
	return scanYAML(data)
}

func tooManyItems(line int, marks string) string {
	return fmt.Sprintf("line %d: more than %d items (counting each %s, which may start one): an app file needs far fewer", line, MaxItems, marks)
}

func tooDeep(line int) string {
	return fmt.Sprintf("line %d: nesting deeper than %d levels", line, MaxDepth)
}

// scanYAML counts YAML's item marks. YAML's strings need no quotes, so
// brackets in text cannot be told from structure without parsing; nesting
// is checked on the parsed nodes instead (see yamlTree), which the item
// bound keeps cheap.
func scanYAML(data []byte) string {
	line, marks, directives := 1, 0, 0
	for i, c := range data {
		switch c {
		case '\n':
			line++
		case '%':
			// yaml.v3 compares each directive with every one before it.
			if i == 0 || data[i-1] == '\n' {
				if directives++; directives > maxDirectives {
					return fmt.Sprintf("line %d: more than %d directives (lines starting with %%): an app file needs none", line, maxDirectives)
				}
			}
		case ',', '[', '{', ':':
			marks++
		case '-', '?':
			// Block indicators only when a blank or the end follows:
			// "--flag" and "2025-01-01" are text.
			if i+1 == len(data) || isBlank(data[i+1]) {
				marks++
			}
		}
		if marks > MaxItems {
			return tooManyItems(line, ", [ { : and each - or ? before a blank")
		}
	}
	return ""
}

// maxDirectives bounds YAML's %YAML and %TAG lines.
const maxDirectives = 8

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// scanBrackets lexes JSON or TOML just enough to skip strings and
// comments, and counts brackets, separators and (TOML) the dots of dotted
// keys, which nest tables as deeply as brackets do.
func scanBrackets(data []byte, toml bool) string {
	const (
		code = iota
		comment
		basic      // "..." with backslash escapes
		literal    // TOML '...'
		multiBasic // TOML """..."""
		multiLit   // TOML '''...'''
	)
	marksText := ", [ { and :"
	if toml {
		marksText = ", [ { = : and ."
	}
	state, line, depth, marks, dots := code, 1, 0, 0, 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == '\n' {
			line++
		}
		switch state {
		case comment:
			if c == '\n' {
				state, dots = code, 0
			}
			continue
		case basic, multiBasic:
			switch {
			case c == '\\' && i+1 < len(data):
				i++
				if data[i] == '\n' {
					line++
				}
			case state == basic && (c == '"' || c == '\n'):
				state = code
			case state == multiBasic && bytes.HasPrefix(data[i:], []byte(`"""`)):
				state, i = code, i+2
			}
			continue
		case literal:
			if c == '\'' || c == '\n' {
				state = code
			}
			continue
		case multiLit:
			if bytes.HasPrefix(data[i:], []byte("'''")) {
				state, i = code, i+2
			}
			continue
		}
		switch c {
		case '"':
			state = basic
			if toml && bytes.HasPrefix(data[i:], []byte(`"""`)) {
				state, i = multiBasic, i+2
			}
		case '\'':
			if toml {
				state = literal
				if bytes.HasPrefix(data[i:], []byte("'''")) {
					state, i = multiLit, i+2
				}
			}
		case '#':
			if toml {
				state = comment
			}
		case '[', '{':
			depth, marks, dots = depth+1, marks+1, 0
			if depth > MaxDepth {
				return tooDeep(line)
			}
		case ']', '}':
			depth, dots = max(depth-1, 0), 0
		case ',', ':', '=':
			// ':' separates JSON's keys from values, '=' TOML's; TOML's
			// times hold colons, which count too.
			marks, dots = marks+1, 0
		case '.':
			if toml {
				marks, dots = marks+1, dots+1
				if dots >= MaxDepth {
					return fmt.Sprintf("line %d: a dotted key or table name nesting deeper than %d levels", line, MaxDepth)
				}
			}
		case '\n':
			dots = 0
		}
		if marks > MaxItems {
			return tooManyItems(line, marksText)
		}
	}
	return ""
}

// checkDepth finds a top-level key of a parsed JSON or TOML document
// whose value nests deeper than MaxDepth (TOML's dotted keys and table
// names nest without brackets). The scan bounded the parser's work; this
// is the exact rule. Keys are tried in order, for a stable message.
func checkDepth(doc map[string]any) (string, bool) {
	for _, k := range slices.Sorted(maps.Keys(doc)) {
		if tooDeepValue(doc[k], 2) {
			return k, false
		}
	}
	return "", true
}

// tooDeepValue reports whether v, a mapping or a list at level depth,
// nests past MaxDepth.
func tooDeepValue(v any, depth int) bool {
	switch v := v.(type) {
	case map[string]any:
		if depth > MaxDepth {
			return true
		}
		for _, e := range v {
			if tooDeepValue(e, depth+1) {
				return true
			}
		}
	case []any:
		if depth > MaxDepth {
			return true
		}
		for _, e := range v {
			if tooDeepValue(e, depth+1) {
				return true
			}
		}
	}
	return false
}
