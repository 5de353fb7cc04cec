package appfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	koanfjson "github.com/knadh/koanf/parsers/json"
	koanftoml "github.com/knadh/koanf/parsers/toml/v2"
	koanfyaml "github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"
)

// formats maps a file extension to its koanf parser and a name for messages.
var formats = map[string]struct {
	name   string
	parser func() koanf.Parser
}{
	".yaml": {"YAML", func() koanf.Parser { return koanfyaml.Parser() }},
	".yml":  {"YAML", func() koanf.Parser { return koanfyaml.Parser() }},
	".toml": {"TOML", func() koanf.Parser { return koanftoml.Parser() }},
	".json": {"JSON", func() koanf.Parser { return koanfjson.Parser() }},
}

// ReadMap decodes a YAML, TOML or JSON document (chosen by the extension of
// path) into its raw, nested map, without flattening keys. A syntax error is
// returned as a *FieldError for the whole file, with the line where the
// parser gives one. The settings package shares it so that both kinds of
// file report errors the same way.
func ReadMap(path string, data []byte) (map[string]any, error) {
	ext := strings.ToLower(filepath.Ext(path))
	f, ok := formats[ext]
	if !ok {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("unknown file type %s: expected .yaml, .yml, .toml or .json", Quote(ext))}
	}
	// The koanf instance is local: koanf keeps its maps behind a mutex and
	// we want no state shared between files.
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(data), f.parser()); err != nil {
		return nil, &FieldError{File: path, Msg: syntaxMessage(f.name, data, err)}
	}
	// Raw returns the nested map as parsed. We read it ourselves rather than
	// through koanf's flattened keys so that unknown keys and type errors are
	// ours to report.
	return k.Raw(), nil
}

// syntaxMessage turns a parser error into one readable line, cut short:
// a parser may quote the file.
func syntaxMessage(format string, data []byte, err error) string {
	var (
		jsonSyntax *json.SyntaxError
		jsonType   *json.UnmarshalTypeError
		yamlType   *yaml.TypeError
		tomlDecode *toml.DecodeError
	)
	switch {
	case errors.As(err, &jsonSyntax):
		line, col := lineCol(data, jsonSyntax.Offset)
		return fmt.Sprintf("invalid JSON: line %d, column %d: %s", line, col, libraryMessage(jsonSyntax.Error()))
	case errors.As(err, &jsonType):
		return fmt.Sprintf("invalid JSON: expected an object at the top level, got %s", libraryMessage(jsonType.Value))
	case errors.As(err, &yamlType):
		msg := strings.Join(yamlType.Errors, "; ")
		if strings.Contains(msg, "cannot unmarshal") {
			// The raw message names Go types; say what the user can change.
			line, _, _ := strings.Cut(msg, ":")
			return fmt.Sprintf("invalid YAML: %s: expected a mapping of keys at the top level", strings.TrimSpace(line))
		}
		return "invalid YAML: " + libraryMessage(msg)
	case errors.As(err, &tomlDecode):
		row, col := tomlDecode.Position()
		return fmt.Sprintf("invalid TOML: line %d, column %d: %s", row, col, libraryMessage(strings.TrimPrefix(tomlDecode.Error(), "toml: ")))
	}
	msg := err.Error()
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
