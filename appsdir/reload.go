package appsdir

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/trust"
)

// reload rereads paths and puts the result in force as one change.
func (w *Watcher) reload(paths []string) {
	defer w.publishRefused()
	if !w.checkTrust() {
		w.stale = true
		w.log.Debug("reload refused: the apps directory cannot be trusted", "dir", w.cfg.Dir, "files", len(paths))
		return
	}
	if w.stale {
		// Refused while Dir could not be trusted: every file, not only
		// the ones named since.
		w.stale = false
		w.scan()
		return
	}
	slices.Sort(paths)
	var batch *trust.Checker
	if w.cfg.Trust != nil {
		b := w.cfg.Trust.Batch()
		batch = &b
	}
	for _, path := range paths {
		w.readFile(path, batch)
	}

	// The apps in force whose files did not change come first, so that a
	// new or edited file can never displace an app that is running: the
	// later of two clashing specs is the one rejected.
	var base, candidates []*appfile.Spec
	for _, path := range slices.Sorted(maps.Keys(w.files)) {
		f := w.files[path]
		switch {
		case f.next != nil:
			candidates = append(candidates, f.next)
		case f.good != nil:
			base = append(base, f.good)
		}
	}
	if len(candidates) == 0 && !w.removedAny(paths) && w.applied {
		w.retryDue = false
		return // touches, invalid edits: nothing in force changes
	}
	initial := !w.applied
	w.applied = true
	rejected := map[string][]error{}
	for _, err := range appfile.CheckConflicts(append(slices.Clone(base), candidates...)) {
		var fe *appfile.FieldError
		if errors.As(err, &fe) {
			rejected[fe.File] = append(rejected[fe.File], err)
		}
	}
	final := slices.Clone(base)
	for _, c := range candidates {
		if errs, bad := rejected[c.File]; bad {
			w.reject(c.File, errors.Join(errs...))
			if g := w.files[c.File].good; g != nil {
				final = append(final, g)
			}
			continue
		}
		final = append(final, c)
	}
	sortByName(final)
	// Logged before its listener closes. A failed apply below only puts
	// back last good versions of apps that stay.
	names := map[string]bool{}
	for _, s := range final {
		names[s.Name] = true
	}
	for _, s := range w.snap {
		if !names[s.Name] {
			w.log.Info("app removed", "app", s.Name, "file", s.File)
		}
	}

	// Put it in force; an app that cannot be applied (its new listen
	// address cannot be bound, say) goes back to its last good version.
	if appErrs := w.cfg.Apply(final); len(appErrs) > 0 {
		failed := map[string]bool{}
		for _, ae := range appErrs {
			failed[ae.App] = true
			if f := w.fileOf(final, ae.App); f != "" {
				w.reject(f, ae.Err)
				if w.files[f].next != nil {
					w.files[f].applyFailed = true
				}
			}
		}
		final = slices.DeleteFunc(final, func(s *appfile.Spec) bool {
			return failed[s.Name] && w.files[s.File].next == s
		})
		for _, ae := range appErrs {
			if f := w.fileOf(candidates, ae.App); f != "" && w.files[f].good != nil {
				final = append(final, w.files[f].good)
			}
		}
		sortByName(final)
		for _, ae := range w.cfg.Apply(final) {
			w.log.Error("cannot put the last good version of an app back in force", "app", ae.App, "err", ae.Err)
		}
	}

	// Record what is in force now.
	inForce := map[*appfile.Spec]bool{}
	for _, s := range final {
		inForce[s] = true
	}
	w.retryDue = false
	for _, path := range slices.Sorted(maps.Keys(w.files)) {
		f := w.files[path]
		if f.next != nil && inForce[f.next] {
			if !initial {
				w.logApplied(path, f)
			}
			f.good, f.next, f.lastErr, f.applyFailed = f.next, nil, "", false
		}
		if f.next != nil && f.applyFailed {
			w.retryDue = true
		}
	}
	w.mu.Lock()
	w.snap = final
	w.mu.Unlock()
}

// logApplied logs, once, the change that putting f.next in force made:
// a file refused before and now served is fixed, else the app is added or
// changed. Changed keys are named, never their values (env may hold
// secrets).
func (w *Watcher) logApplied(path string, f *file) {
	attrs := []any{"app", f.next.Name, "file", path}
	if f.good != nil {
		attrs = append(attrs, "keys", strings.Join(f.next.Changed(f.good), ","))
	}
	switch {
	case f.lastErr != "":
		w.log.Info("app file fixed", attrs...)
	case f.good == nil:
		w.log.Info("app added", attrs...)
	default:
		w.log.Info("app changed", attrs...)
	}
}

// readFile rereads one app file and records what changed: removed, the
// same bytes as before, invalid (logged), or a new version to put in force.
// c, when not nil, judges the file (Config.Trust).
func (w *Watcher) readFile(path string, c *trust.Checker) {
	f := w.files[path]
	data, err := appfile.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || isDir(path) {
			delete(w.files, path) // logged once out of force
			return
		}
		w.log.Error("reading app file; keeping its last good version", "file", path, "err", err)
		return
	}
	h := sha256.Sum256(data)
	var distrust error
	if c != nil {
		// A chmod or chown that fixes (or breaks) the file is a change too.
		var o trust.Owner
		o, distrust = c.AppFile(path)
		h = sha256.Sum256(fmt.Appendf(data, "\x00%d %s %v", o.UID, o.Via, distrust))
	}
	if f != nil && f.hash == h {
		return // a touch, or a save of the same bytes
	}
	if f == nil {
		f = &file{}
		w.files[path] = f
	}
	f.hash = h
	f.next, f.applyFailed = nil, false
	if distrust != nil {
		// Not even parsed: what it says is not the daemon's to read.
		f.lastErr = ""
		w.reject(path, &appfile.FieldError{File: path, Msg: distrust.Error()})
		return
	}
	spec, err := appfile.Parse(path, data)
	if err != nil {
		f.lastErr = ""
		w.reject(path, err)
		return
	}
	if f.good != nil && spec.Equal(f.good) {
		// Back to what is in force, or only comments changed.
		if f.lastErr != "" {
			w.log.Info("app file fixed", "app", spec.Name, "file", path, "keys", "")
		}
		f.lastErr = ""
		return
	}
	f.next = spec
}

// reject logs why the file at path is not (or not wholly) in force, once
// per distinct problem.
func (w *Watcher) reject(path string, err error) {
	f := w.files[path]
	msg := err.Error()
	if f != nil {
		if f.lastErr == msg {
			return
		}
		f.lastErr = msg
	}
	kept := "it is not served"
	attrs := []any{"file", path}
	if f != nil && f.good != nil {
		kept = "keeping its last good version"
		attrs = append(attrs, "app", f.good.Name)
	}
	for _, line := range strings.Split(msg, "\n") {
		w.log.Error("app file not applied; "+kept, append(attrs, "err", line)...)
	}
	if w.cfg.Rejected != nil {
		w.cfg.Rejected(path, err)
	}
}

// removedAny reports whether any of paths was an app file that is gone.
func (w *Watcher) removedAny(paths []string) bool {
	for _, p := range paths {
		if _, ok := w.files[p]; !ok {
			for _, s := range w.snap {
				if s.File == p {
					return true
				}
			}
		}
	}
	return false
}

// fileOf returns the file of the app called name among specs.
func (w *Watcher) fileOf(specs []*appfile.Spec, name string) string {
	for _, s := range specs {
		if s.Name == name {
			return s.File
		}
	}
	return ""
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func sortByName(specs []*appfile.Spec) {
	slices.SortFunc(specs, func(a, b *appfile.Spec) int { return strings.Compare(a.Name, b.Name) })
}
