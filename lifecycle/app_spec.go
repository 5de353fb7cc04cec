package lifecycle

import (
	"maps"
	"slices"

	"github.com/dynapm/dynapm/appfile"
)

// needsRestart reports whether a running instance of old must be replaced to
// honour new: a change to what is run, where, with what environment, or
// where it listens. Timeouts, max_pending, stop settings and mode take effect
// without a restart.
//
// TODO: switch to appfile's Spec.NeedsRestart once that lands.
func needsRestart(old, new *appfile.Spec) bool {
	return !slices.Equal(old.Command, new.Command) ||
		old.Dir != new.Dir ||
		!maps.Equal(old.Env, new.Env) ||
		old.Upstream != new.Upstream
}
