package appsdir

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dynapm/dynapm/appfile"
)

// Refused is an app file with no version in force: refused when read
// (invalid, not to be trusted) or when put in force (its listen address
// held by another process, say).
type Refused struct {
	// Name is the app's name (the file name's stem), or the file's name
	// when its stem is not a valid app name.
	Name string
	File string
	// Err is why, one problem per line, without the file's path.
	Err string
}

// Refused returns the app files that are not in force, by name: what
// `dynapm status` shows as apps in state error.
func (w *Watcher) Refused() []Refused {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.refused
}

// publishRefused records, for Refused, the files that are not in force
// after a reload.
func (w *Watcher) publishRefused() {
	var out []Refused
	for _, path := range slices.Sorted(maps.Keys(w.files)) {
		f := w.files[path]
		if f.good != nil || f.lastErr == "" {
			continue
		}
		base := filepath.Base(path)
		name := base
		if stem, ok := appfile.SplitAppFile(base); ok && appfile.ValidName(stem) {
			name = stem
		}
		var lines []string
		for _, line := range strings.Split(f.lastErr, "\n") {
			lines = append(lines, strings.TrimPrefix(line, path+": "))
		}
		out = append(out, Refused{Name: name, File: path, Err: strings.Join(lines, "\n")})
	}
	slices.SortStableFunc(out, func(a, b Refused) int { return strings.Compare(a.Name, b.Name) })
	w.mu.Lock()
	w.refused = out
	w.mu.Unlock()
}
