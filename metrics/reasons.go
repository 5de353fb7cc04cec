package metrics

import "strings"

// The reason labels of dynapm_app_starts_total and dynapm_app_stops_total: a
// small fixed set, so that dashboards and alerts can rely on it and a
// detailed reason ("memory: over budget") does not make a series of its own.
// The detailed reason stays in the daemon's log. Help texts and the README
// list these.
var (
	// startReasons: connection (a client connected), cron (a scheduled
	// wake), manual (dynapm start or restart), boot (persistent and always
	// apps at daemon start), reload (a changed app file), crash (started
	// again after a crash), memory (restarted over memory_max), scale (an
	// instance added), adopt (found already running), outside (an always
	// app started again after someone else stopped it), other.
	startReasons = []string{"connection", "cron", "manual", "boot", "reload", "crash", "memory", "scale", "adopt", "outside", "other"}
	// stopReasons: idle (idle_timeout), memory (a memory stop, or a
	// restart over memory_max), manual (dynapm stop or restart), crash (the
	// program exited on its own), reload (a changed app file), removed (its
	// app file went away), outside (stopped by someone else: docker stop,
	// a command driver's check), failed (did not get ready), shutdown (the
	// daemon stopping), scale (an instance retired), exited (a handoff:
	// socket program that exited 0 by itself), other.
	stopReasons = []string{"idle", "memory", "manual", "crash", "reload", "removed", "outside", "failed", "shutdown", "scale", "exited", "other"}
)

// startLabel maps the lifecycle manager's reason for a start to its label.
func startLabel(reason string) string {
	switch {
	case strings.HasPrefix(reason, "memory"):
		return "memory"
	case reason == "min":
		return "scale" // topping up to scale.min
	case reason == "stopped from outside":
		return "outside"
	}
	return known(reason, startReasons)
}

// stopLabel maps the lifecycle manager's reason for a stop to its label.
func stopLabel(reason string) string {
	switch {
	case strings.HasPrefix(reason, "memory"):
		return "memory"
	case reason == "restart":
		return "manual" // the stop half of dynapm restart
	case reason == "scale down":
		return "scale"
	case reason == "start timeout":
		return "failed"
	case reason == "stopped from outside":
		return "outside"
	}
	return known(reason, stopReasons)
}

// known returns reason when it is one of labels, else "other".
func known(reason string, labels []string) string {
	for _, l := range labels {
		if reason == l {
			return l
		}
	}
	return "other"
}
