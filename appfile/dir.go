package appfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// LoadDir loads every app file in dir (not recursively) and checks them
// against each other. Symlinks are followed, so the layout of a Kubernetes
// ConfigMap volume (web.yaml -> ..data/web.yaml) works, while its ..data
// and ..TIMESTAMP entries, like all dotfiles and editor leftovers, are
// skipped. A file with an error is left out of the specs; the others are
// returned sorted by name. Each error is one problem, mostly a *FieldError.
func LoadDir(dir string) ([]*Spec, []error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{fmt.Errorf("reading apps dir: %w", err)}
	}
	var errs []error
	fail := func(err error) { errs = append(errs, split(err)...) }

	// Group by stem first: web.yaml next to web.toml is ambiguous, and
	// neither should win by the accident of sort order.
	files := map[string][]string{}
	var stems []string
	for _, e := range entries {
		stem, ok := SplitAppFile(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if !ValidName(stem) {
			fail(&FieldError{File: path, Msg: fmt.Sprintf("app name %q (the file name without its extension) must match %s", stem, nameRule)})
			continue
		}
		if _, seen := files[stem]; !seen {
			stems = append(stems, stem)
		}
		files[stem] = append(files[stem], path)
	}
	slices.Sort(stems)

	var specs []*Spec
	for _, stem := range stems {
		paths := files[stem]
		if len(paths) > 1 {
			for _, p := range paths {
				others := slices.DeleteFunc(slices.Clone(paths), func(o string) bool { return o == p })
				fail(&FieldError{File: p, Msg: fmt.Sprintf("app %q is also defined by %s: keep one file per app", stem, strings.Join(others, ", "))})
			}
			continue
		}
		path := paths[0]
		fi, err := os.Stat(path) // follows symlinks
		switch {
		case err != nil:
			fail(&FieldError{File: path, Msg: fmt.Sprintf("reading app file: %v", err)})
			continue
		case fi.IsDir():
			continue
		}
		s, err := Load(path)
		if err != nil {
			fail(err)
			continue
		}
		specs = append(specs, s)
	}

	cerrs, rejected := conflicts(specs)
	errs = append(errs, cerrs...)
	kept := specs[:0]
	for i, s := range specs {
		if !rejected[i] {
			kept = append(kept, s)
		}
	}
	return kept, errs
}

// split undoes errors.Join so that each problem is its own error.
func split(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}
