package e2e

import (
	"io/fs"
	"os"
	pathpkg "path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the repository's top directory, seen from this package's.
const repoRoot = ".."

// Every test docs/RELIABILITY.md names as proof exists, and every row
// names at least one: a renamed or deleted test must not leave a promise
// without its proof.
func TestReliabilityTableNamesTestsThatExist(t *testing.T) {
	doc := readDoc(t, "docs", "RELIABILITY.md")
	defined := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
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
	lines := strings.Split(doc, "\n")
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

// codeSpan is a markdown code span: `text`.
var codeSpan = regexp.MustCompile("`([^`\n]+)`")

// Every file and folder of the repository that the README's layout table
// and docs/ARCHITECTURE.md name exists: a move or a rename must not leave
// the reference pointing at nothing.
func TestDocsNamePathsThatExist(t *testing.T) {
	files := repoTree(t)
	for _, doc := range []struct{ name, text string }{
		{"README.md's layout table", strings.Join(readmeLayout(t), "\n")},
		{"docs/ARCHITECTURE.md", readDoc(t, "docs", "ARCHITECTURE.md")},
	} {
		paths := docPaths(doc.text)
		// Both name dozens: a handful means the extraction broke.
		if len(paths) < 20 {
			t.Errorf("%s: only %d repository paths found (%q); docPaths no longer reads it", doc.name, len(paths), paths)
		}
		for _, p := range paths {
			if !files.has(p) {
				t.Errorf("%s names `%s`, which is not in the repository", doc.name, p)
			}
		}
	}
}

// The check above reports the kinds of stale names the docs had, and
// leaves alone what only looks like a path.
func TestDocsPathCheckCatchesStaleNames(t *testing.T) {
	text := "`l4/loop.go` and `conn_raw.go` in `spawner/`, not `l4/accept.go`, `cli*.go`\n" +
		"nor `log/slog`, `STATE/run`, `driver/NAME`, `/proc/meminfo`, `go run ./bench`, `l4.Server`\n" +
		"```\n" +
		"driver/exec/spawner/    forks programs for driver/exec\n" +
		"l4/gone/, settings/     a folder that moved\n" +
		"```\n"
	files := repoTree(t)
	var missing []string
	for _, p := range docPaths(text) {
		if !files.has(p) {
			missing = append(missing, p)
		}
	}
	want := []string{"l4/loop.go", "conn_raw.go", "spawner/", "l4/gone/"}
	if strings.Join(missing, " ") != strings.Join(want, " ") {
		t.Errorf("missing paths = %q, want %q", missing, want)
	}
}

// The README's layout table lists every top-level folder and every
// package under internal/ and driver/, each once, so that a new package
// is described where users look.
func TestREADMELayoutListsEveryFolder(t *testing.T) {
	listed := map[string]int{}
	for _, row := range readmeLayout(t) {
		cells := strings.Split(row, "|")
		for _, m := range codeSpan.FindAllStringSubmatch(cells[1], -1) {
			listed[strings.TrimSuffix(m[1], "/")]++
		}
	}
	for p, n := range listed {
		if n > 1 {
			t.Errorf("README.md's layout table lists `%s` %d times", p, n)
		}
	}
	folders := repoTree(t).folders()
	if len(folders) < 10 {
		t.Fatalf("only %d folders found (%q)", len(folders), folders)
	}
	for _, dir := range folders {
		found := listed[dir] > 0
		if !strings.Contains(dir, "/") {
			// A top-level folder may be listed through its packages.
			for p := range listed {
				found = found || strings.HasPrefix(p, dir+"/")
			}
		}
		if !found {
			t.Errorf("README.md's layout table does not list `%s/`", dir)
		}
	}
}

func readDoc(t *testing.T, path ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{repoRoot}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readmeLayout returns the rows of the README's layout table, without
// its header.
func readmeLayout(t *testing.T) []string {
	t.Helper()
	lines := strings.Split(readDoc(t, "README.md"), "\n")
	start := slices.Index(lines, "| path | what it does |")
	if start < 0 {
		t.Fatal(`README.md: no layout table (a "| path | what it does |" header)`)
	}
	var rows []string
	for _, line := range lines[start+1:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if !strings.HasPrefix(line, "|---") {
			rows = append(rows, line)
		}
	}
	if len(rows) < 10 {
		t.Fatalf("README.md's layout table has only %d rows", len(rows))
	}
	return rows
}

var (
	// pathLike is what a repository path may be made of; a trailing slash
	// marks a folder.
	pathLike = regexp.MustCompile(`^[A-Za-z0-9_.*-]+(/[A-Za-z0-9_.*-]+)*/?$`)
	// placeholder is a part of a path that stands for a value (STATE,
	// driver/NAME).
	placeholder = regexp.MustCompile(`^[A-Z][A-Z_]*$`)
	fileExt     = regexp.MustCompile(`\.(go|md|service|svg|toml|ya?ml)$`)
)

// docPaths returns the repository paths text names: in code spans, and in
// fenced blocks (ARCHITECTURE's package list) as words. A word is a path
// when it ends in a slash or a file extension, or when its first part is
// at the repository's top; a Go import path such as log/slog is not.
func docPaths(text string) []string {
	var paths []string
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		var words []string
		if fenced {
			words = strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == ',' || r == ';' })
		} else {
			for _, m := range codeSpan.FindAllStringSubmatch(line, -1) {
				words = append(words, m[1])
			}
		}
		for _, w := range words {
			if isRepoPath(w) {
				paths = append(paths, w)
			}
		}
	}
	return paths
}

func isRepoPath(w string) bool {
	if !pathLike.MatchString(w) {
		return false
	}
	for _, part := range strings.Split(strings.TrimSuffix(w, "/"), "/") {
		if placeholder.MatchString(part) {
			return false
		}
	}
	if strings.HasSuffix(w, "/") || fileExt.MatchString(w) {
		return true
	}
	top, _, nested := strings.Cut(w, "/")
	if !nested {
		return false
	}
	_, err := os.Stat(filepath.Join(repoRoot, top))
	return err == nil
}

// tree is the repository's files and folders, as slash-separated paths
// from its top, folders ending in a slash; hidden ones and those
// .gitignore names at the top (build output) left out.
type tree []string

func repoTree(t *testing.T) tree {
	t.Helper()
	ignored := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(repoRoot, ".gitignore")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(strings.TrimSpace(line), "/"); ok {
				ignored[strings.TrimSuffix(name, "/")] = true
			}
		}
	}
	var tr tree
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == repoRoot {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, repoRoot+string(filepath.Separator)))
		if strings.HasPrefix(d.Name(), ".") || ignored[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			rel += "/"
		}
		tr = append(tr, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// has reports whether p (a pattern as filepath.Match takes) names
// something in the tree. A bare file name is relative to the package the
// text is about, so it may be anywhere; any other path is from the top.
func (tr tree) has(p string) bool {
	folder := strings.HasSuffix(p, "/")
	p = strings.TrimSuffix(p, "/")
	for _, e := range tr {
		isDir := strings.HasSuffix(e, "/")
		e = strings.TrimSuffix(e, "/")
		if folder && !isDir {
			continue
		}
		name := e
		if !strings.Contains(p, "/") && !folder {
			name = pathpkg.Base(e)
		}
		if ok, _ := pathpkg.Match(p, name); ok {
			return true
		}
	}
	return false
}

// folders returns the folders the layout table must list: every one at
// the top, and every one in internal/ and driver/.
func (tr tree) folders() []string {
	var dirs []string
	for _, e := range tr {
		dir, ok := strings.CutSuffix(e, "/")
		if !ok {
			continue
		}
		switch parent := pathpkg.Dir(dir); parent {
		case ".", "internal", "driver":
			dirs = append(dirs, dir)
		}
	}
	return dirs
}
