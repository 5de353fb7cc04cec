package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the repository's top directory, seen from this package's.
const repoRoot = ".."

// Every test docs/RELIABILITY.md names as proof exists, and every row
// names at least one: a renamed or deleted test must not leave a promise
// without its proof.
func TestReliabilityTableNamesTestsThatExist(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "RELIABILITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	err = filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)\w+)\(`).FindAllSubmatch(src, -1) {
			defined[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile("`((?:Test|Fuzz)\\w+)`")
	rows := 0
	lines := strings.Split(string(doc), "\n")
	for i, line := range lines {
		// A table's header row is the one followed by its |---| line.
		header := i+1 < len(lines) && strings.HasPrefix(lines[i+1], "|---")
		if !strings.HasPrefix(line, "| ") || header {
			continue
		}
		rows++
		names := name.FindAllStringSubmatch(line, -1)
		if len(names) == 0 {
			t.Errorf("row names no test: %s", line)
		}
		for _, n := range names {
			if !defined[n[1]] {
				t.Errorf("%s, named in docs/RELIABILITY.md, is not a test in this repository", n[1])
			}
		}
	}
	if rows == 0 {
		t.Fatal("no table rows in docs/RELIABILITY.md")
	}
}
