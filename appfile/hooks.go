package appfile

import (
	"slices"
	"time"
)

// DefaultHookTimeout bounds each hook run when the file sets no
// hook_timeout.
const DefaultHookTimeout = 30 * time.Second

// hookKeys are the keys of the hooks mapping, in the order they run.
var hookKeys = []string{"before_start", "after_start", "before_stop", "after_stop"}

// Hooks are commands run around an app's starts and stops, each an argv
// (a string in the file becomes ["/bin/sh", "-c", string]); nil when
// absent.
type Hooks struct {
	// BeforeStart runs before the program is started; failing, it fails
	// the start.
	BeforeStart []string
	// AfterStart runs once the program is ready.
	AfterStart []string
	// BeforeStop runs before the program is asked to stop.
	BeforeStop []string
	// AfterStop runs once the program is gone (a backup goes here); the
	// app's next start waits for it.
	AfterStop []string
}

// hooks decodes the hooks mapping.
func (d *decoder) hooks(s *Spec, key string, v any) {
	m, ok := d.mapping(key, v, hookKeys)
	if !ok {
		return
	}
	for _, k := range hookKeys {
		hv, present := m[k]
		if !present || hv == nil {
			continue
		}
		argv, _ := d.argv(join(key, k), hv)
		switch k {
		case "before_start":
			s.Hooks.BeforeStart = argv
		case "after_start":
			s.Hooks.AfterStart = argv
		case "before_stop":
			s.Hooks.BeforeStop = argv
		case "after_stop":
			s.Hooks.AfterStop = argv
		}
	}
}

func (h Hooks) equal(o Hooks) bool {
	return slices.Equal(h.BeforeStart, o.BeforeStart) && slices.Equal(h.AfterStart, o.AfterStart) &&
		slices.Equal(h.BeforeStop, o.BeforeStop) && slices.Equal(h.AfterStop, o.AfterStop)
}
