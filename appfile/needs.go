package appfile

import (
	"fmt"
	"strings"
)

// needs decodes the apps this one needs: one name or a list of them.
func (d *decoder) needs(s *Spec, key string, v any) {
	s.Needs, _ = d.stringList(key, v, "an app name", func(field, name string) bool {
		switch {
		case !ValidName(name):
			d.errorf(field, "expected an app name (the stem of its file, matching %s), got %s", nameRule, Quote(name))
			return false
		case name == s.Name:
			d.errorf(field, "%s is this app: an app cannot need itself", Quote(name))
			return false
		}
		return true
	})
}

// needsErrors refuses, among the specs not yet rejected, those that need an
// app not among them and those whose needs would close a cycle. As
// everywhere in conflicts, earlier specs win: needs are added in order,
// and the spec whose needs close a cycle is the one refused, with the
// cycle named. A spec that needs a refused one is refused in turn.
func needsErrors(specs []*Spec, rejected map[int]bool) []error {
	var errs []error
	byName := map[string]*Spec{}
	for i, s := range specs {
		if !rejected[i] {
			byName[s.Name] = s
		}
	}
	reject := func(i int, field, format string, args ...any) {
		s := specs[i]
		errs = append(errs, &FieldError{File: s.File, Field: field, Msg: fmt.Sprintf(format, args...)})
		rejected[i] = true
		delete(byName, s.Name)
	}
	unknown := func() {
		for changed := true; changed; {
			changed = false
			for i, s := range specs {
				if !rejected[i] {
					if j, n := missingNeed(s, byName); j >= 0 {
						reject(i, index("needs", j), "%s", notServed(n))
						changed = true
					}
				}
			}
		}
	}
	unknown()
	// An app cannot need an app of its own exclusive group: the two
	// would have to run at once.
	for i, s := range specs {
		if rejected[i] || s.Exclusive == "" {
			continue
		}
		for j, n := range s.Needs {
			if b := byName[n]; b != nil && b.Exclusive == s.Exclusive {
				reject(i, index("needs", j), "%s is in exclusive group %s too: the two cannot run at once", Quote(n), Quote(s.Exclusive))
				break
			}
		}
	}
	unknown()
	// Edges of the specs accepted so far: a new spec's needs close a cycle
	// when one of them already leads back to it.
	edges := map[string][]string{}
	for i, s := range specs {
		if rejected[i] {
			continue
		}
		cyclic := false
		for j, n := range s.Needs {
			if path := pathTo(edges, n, s.Name); path != nil {
				cycle := append([]string{s.Name}, path...)
				reject(i, index("needs", j), "%s closes a cycle: %s (an app cannot need itself, even through others)", Quote(n), strings.Join(cycle, " -> "))
				cyclic = true
				break
			}
		}
		if !cyclic {
			edges[s.Name] = s.Needs
		}
	}
	unknown()
	return errs
}

// pathTo returns a path of edges from from to to (both included), or nil.
func pathTo(edges map[string][]string, from, to string) []string {
	seen := map[string]bool{}
	var walk func(n string) []string
	walk = func(n string) []string {
		if n == to {
			return []string{n}
		}
		if seen[n] {
			return nil
		}
		seen[n] = true
		for _, next := range edges[n] {
			if p := walk(next); p != nil {
				return append([]string{n}, p...)
			}
		}
		return nil
	}
	return walk(from)
}

// MissingNeeds returns an error for each spec that needs an app not in
// specs: hot reload puts such a spec in force all the same (the app it
// needs was removed, or an edit was refused), and its starts fail until
// the app it needs is back.
func MissingNeeds(specs []*Spec) []error {
	byName := make(map[string]*Spec, len(specs))
	for _, s := range specs {
		byName[s.Name] = s
	}
	var errs []error
	for _, s := range specs {
		if j, n := missingNeed(s, byName); j >= 0 {
			errs = append(errs, &FieldError{File: s.File, Field: index("needs", j), Msg: notServed(n)})
		}
	}
	return errs
}

// missingNeed returns the first need of s not in byName and its index, or -1.
func missingNeed(s *Spec, byName map[string]*Spec) (int, string) {
	for j, n := range s.Needs {
		if byName[n] == nil {
			return j, n
		}
	}
	return -1, ""
}

func notServed(name string) string {
	return fmt.Sprintf("%s is not an app that is served (no valid file %s.yaml, .yml, .toml or .json in the apps directory)", Quote(name), name)
}
