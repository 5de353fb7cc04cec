package appfile

import (
	"path/filepath"
	"regexp"
	"strings"
)

// nameRule is the rule an app name (a file name's stem) follows. It keeps
// names safe as log file names, metric labels and URL path segments.
const nameRule = "[a-z0-9][a-z0-9_-]*"

var nameRE = regexp.MustCompile(`^` + nameRule + `$`)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidName reports whether name is a valid app name.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// IsAppFile reports whether a directory entry named name is an app file:
// NAME.yaml, .yml, .toml or .json with a valid NAME. Editor and tool
// leftovers (dotfiles, .#lock files, backups ending in ~, .swp, .swx, .tmp
// and vim's 4913 probe) are not.
func IsAppFile(name string) bool {
	stem, ok := SplitAppFile(name)
	return ok && ValidName(stem)
}

// SplitAppFile returns the stem of a file name with an app file extension
// that is not an editor leftover, whether or not the stem is a valid name.
// LoadDir uses it to report "Web.yaml" instead of silently ignoring it.
func SplitAppFile(name string) (stem string, ok bool) {
	if isIgnored(name) {
		return "", false
	}
	ext := filepath.Ext(name)
	if _, known := formats[ext]; !known {
		return "", false
	}
	return strings.TrimSuffix(name, ext), true
}

// isIgnored matches the names that editors, tools and Kubernetes ConfigMap
// volumes (..data, ..2024_01_01...) leave next to real files.
func isIgnored(name string) bool {
	switch {
	case name == "", name == "4913",
		strings.HasPrefix(name, "."),
		strings.HasSuffix(name, "~"),
		strings.HasSuffix(name, ".swp"),
		strings.HasSuffix(name, ".swx"),
		strings.HasSuffix(name, ".tmp"):
		return true
	}
	return false
}

// validHostname reports whether s is a lowercase DNS name, optionally with a
// "*." wildcard prefix when wildcard is true.
func validHostname(s string, wildcard bool) bool {
	if wildcard {
		s = strings.TrimPrefix(s, "*.")
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
