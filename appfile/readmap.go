package appfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"
)

// formats maps a file extension to the name of its format.
var formats = map[string]string{
	".yaml": "YAML",
	".yml":  "YAML",
	".toml": "TOML",
	".json": "JSON",
}

// ReadMap decodes a YAML, TOML or JSON document (chosen by the extension of
// path) into its raw, nested map, without flattening keys. Before a parser
// sees the bytes, checkShape bounds the items and the nesting they can
// hold; after, the nesting and (YAML) what aliases expand to are checked
// exactly. A syntax error or a file past a bound is returned as a
// *FieldError for the whole file, with the line where one is known. The
// settings package shares it so that both kinds of file report errors the
// same way.
func ReadMap(path string, data []byte) (map[string]any, error) {
	ext := strings.ToLower(filepath.Ext(path))
	format, ok := formats[ext]
	if !ok {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("unknown file type %s: expected .yaml, .yml, .toml or .json", Quote(ext))}
	}
	if msg := checkShape(format, data); msg != "" {
		return nil, &FieldError{File: path, Msg: msg}
	}
	raw, err := decode(format, data)
	if err != nil {
		return nil, &FieldError{File: path, Msg: syntaxMessage(format, data, err)}
	}
	if format != "YAML" {
		if key, ok := checkDepth(raw); !ok {
			return nil, &FieldError{File: path, Field: Key(key), Msg: fmt.Sprintf("nesting deeper than %d levels", MaxDepth)}
		}
	}
	return raw, nil
}

// decode parses data into a nested map. The values are those of the
// parsers' own decoding into an any: strings, bools, numbers (float64 from
// JSON; int, int64, uint64 or float64 from YAML and TOML), timestamps,
// lists ([]any) and mappings (map[string]any).
func decode(format string, data []byte) (map[string]any, error) {
	var raw map[string]any
	switch format {
	case "YAML":
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, err
		}
		return yamlDocument(&doc)
	case "TOML":
		if err := toml.Unmarshal(data, &raw); err != nil {
			return nil, err
		}
	default:
		if err := json.Unmarshal(data, &raw); err != nil {
			return nil, err
		}
	}
	if raw == nil {
		raw = map[string]any{}
	}
	return raw, nil
}

// syntaxMessage turns a parser error into one readable line, cut short:
// a parser may quote the file.
func syntaxMessage(format string, data []byte, err error) string {
	var (
		jsonSyntax *json.SyntaxError
		jsonType   *json.UnmarshalTypeError
		tomlDecode *toml.DecodeError
		yamlTree   *yamlError
	)
	switch {
	case errors.As(err, &yamlTree):
		return yamlTree.Error()
	case errors.As(err, &jsonSyntax):
		line, col := lineCol(data, jsonSyntax.Offset)
		return fmt.Sprintf("invalid JSON: line %d, column %d: %s", line, col, libraryMessage(jsonSyntax.Error()))
	case errors.As(err, &jsonType):
		return fmt.Sprintf("invalid JSON: expected an object at the top level, got %s", libraryMessage(jsonType.Value))
	case errors.As(err, &tomlDecode):
		row, col := tomlDecode.Position()
		return fmt.Sprintf("invalid TOML: line %d, column %d: %s", row, col, libraryMessage(strings.TrimPrefix(tomlDecode.Error(), "toml: ")))
	}
	msg := err.Error()
	switch format {
	case "YAML":
		msg = yamlSyntaxLine(data, msg)
	case "TOML":
		if line := tomlErrorLine(data, msg); line > 0 {
			return fmt.Sprintf("invalid TOML: line %d: %s", line, libraryMessage(strings.TrimPrefix(msg, "toml: ")))
		}
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "json: ")
	msg = strings.TrimPrefix(msg, "toml: ")
	return fmt.Sprintf("invalid %s: %s", format, libraryMessage(msg))
}

// lineCol converts a byte offset into a 1-based line and column.
func lineCol(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	line, col = 1, 1
	for _, b := range data[:max(offset-1, 0)] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}
