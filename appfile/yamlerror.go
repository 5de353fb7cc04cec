package appfile

import (
	"bytes"
	"regexp"
	"slices"
	"strconv"
)

// yamlParserProblems are the problems yaml.v3's parser (not its scanner)
// reports. It counts their lines from 0, and leaves the line out when it
// is the first.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// yamlTabProblems are scanner problems yaml.v3 places at the line where
// the scalar began, not at the line of the tab.
var yamlTabProblems = []string{
	"found a tab character that violates indentation",
	"found a tab character where an indentation space is expected",
}

var yamlLineMessage = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlSyntaxLine returns yaml.v3's message with the line of the file the
// problem is on, counted from 1 as editors do.
func yamlSyntaxLine(data []byte, msg string) string {
	m := yamlLineMessage.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	line, _ := strconv.Atoi(m[1])
	problem := m[2]
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	switch {
	case slices.Contains(yamlParserProblems, problem):
		line++
	case slices.Contains(yamlTabProblems, problem) && line > 0:
		for i := line; i <= len(lines); i++ {
			indent := lines[i-1][:len(lines[i-1])-len(bytes.TrimLeft(lines[i-1], " \t"))]
			if bytes.IndexByte(indent, '\t') >= 0 {
				line = i
				break
			}
		}
	}
	if line == 0 {
		return problem
	}
	// A problem found at the end of the file is on its last line.
	line = min(line, max(len(lines), 1))
	return "line " + strconv.Itoa(line) + ": " + problem
}
