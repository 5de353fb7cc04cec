package cron

import (
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// runWake fires wake entry i of spec: the app starts (if stopped) and stays
// up at least for the entry's keep.
func (s *Scheduler) runWake(spec *appfile.Spec, i int) {
	w := spec.Wake[i]
	until := time.Now().Add(w.Keep)
	if err := s.cfg.Waker.KeepUp(spec.Name, until); err != nil {
		s.log.Warn("scheduled wake failed", "app", spec.Name, "wake", i, "cron", w.Cron, "err", err)
		return
	}
	s.log.Info("scheduled wake", "app", spec.Name, "wake", i, "cron", w.Cron, "until", until)
}
