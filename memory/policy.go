package memory

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/dynapm/dynapm/appfile"
)

// Policy holds the memory settings from the daemon's config file. The zero
// Policy never stops anything.
type Policy struct {
	// MinAvailableBytes is the floor for MemAvailable in bytes.
	MinAvailableBytes int64
	// MinAvailablePercent is the floor as a percentage of MemTotal. When
	// both are set the higher floor applies.
	MinAvailablePercent float64
	// Budget is the most all managed apps' tree RSS may add up to; 0 for
	// no budget.
	Budget int64
	// Margin is the hysteresis: once below the floor, apps are stopped until
	// available memory is back above floor+Margin; once over budget, until
	// the sum is below Budget-Margin. 0 means 5% of the floor or budget, so
	// that one freed megabyte does not end a shortage the next one restarts.
	Margin int64
	// FarOver is the multiple of memory_max beyond which an app is stopped
	// at once instead of restarted at its next idle moment; 0 means 1.5.
	FarOver float64
}

// Cause says why an app is stopped for memory.
type Cause string

// The causes of a memory stop.
const (
	// CauseFloor: MemAvailable is below min_available.
	CauseFloor Cause = "below min_available"
	// CauseBudget: the apps' total tree RSS is over budget.
	CauseBudget Cause = "over budget"
	// CauseMakeRoom: an app is about to start and would push memory below
	// the floor or over budget.
	CauseMakeRoom Cause = "making room"
)

// Stop is the decision to stop one app for memory.
type Stop struct {
	// App is the app's name.
	App string
	// RSS is the app's tree RSS, the memory its stop is expected to free.
	RSS int64
	// Connections is the number of open connections the stop cuts.
	Connections int
	// LastResort is set when the app has open connections: the caller logs
	// a warning naming how many connections were cut.
	LastResort bool
	// Cause says why.
	Cause Cause
}

// Floor returns the min_available floor in bytes for a machine with total
// bytes of memory, 0 when there is no floor.
func (p Policy) Floor(total int64) int64 {
	pct := int64(p.MinAvailablePercent / 100 * float64(total))
	return max(p.MinAvailableBytes, pct)
}

// margin returns the hysteresis for a floor or budget of limit bytes.
func (p Policy) margin(limit int64) int64 {
	if p.Margin > 0 {
		return p.Margin
	}
	return limit / 20
}

// Shortage says which limits memory is short of. The Monitor carries it
// from one check to the next: a limit once crossed stays short until memory
// is back past its margin (above floor+Margin, under Budget-Margin), so that
// stops which freed less than their RSS promised are followed by more stops
// at the next check, not by nothing until the limit is crossed again.
type Shortage struct {
	// Floor: MemAvailable went below min_available.
	Floor bool
	// Budget: the apps' total tree RSS went over budget.
	Budget bool
}

// shortage returns how many bytes must be freed for the reading, with
// extra bytes about to be used by an app that starts, and why; during is
// the shortage the previous check left, now the shortage after this
// reading. need is 0 when memory is neither below the floor nor over budget
// (nor, for a limit in during, short of its margin).
func (p Policy) shortage(r Reading, extra int64, during Shortage) (need int64, cause Cause, now Shortage) {
	avail, sum := r.Available-extra, extra
	for _, a := range r.Apps {
		if a.Stopping {
			avail += a.RSS // on its way back to the kernel
			continue
		}
		sum += a.RSS
	}
	if floor := p.Floor(r.Total); floor > 0 {
		target := floor + p.margin(floor)
		if avail < floor || during.Floor && avail < target {
			now.Floor = true
			need, cause = target-avail, CauseFloor
		}
	}
	if p.Budget > 0 {
		target := p.Budget - p.margin(p.Budget)
		if sum > p.Budget || during.Budget && sum > target {
			now.Budget = true
			if n := sum - target; n > need {
				need, cause = n, CauseBudget
			}
		}
	}
	return need, cause, now
}

// Victims returns the apps to stop, in order, to bring memory back above
// the floor plus margin and under the budget minus margin. during is the
// shortage the previous check left (the zero Shortage for none): a limit in
// it is short until its margin is reached, not only once crossed. Each
// victim's RSS counts as freed. Never an always app; apps without open
// connections before apps with; lower memory_priority first; least
// recently active first; frozen apps before all of them (see stopOrder).
// Apps with open connections (frozen ones aside) are chosen only when
// the others do not free enough, flagged LastResort. The list may free less
// than needed when no more apps can be stopped.
func (p Policy) Victims(r Reading, during Shortage) []Stop {
	need, cause, _ := p.shortage(r, 0, during)
	return pick(r, need, cause, "", true)
}

// MakeRoom returns the apps to stop before app starts, expected to use
// expected bytes (its last observed peak RSS), so that the start does not
// push memory below the floor or over budget. It never cuts open
// connections to start another app: when idle apps do not free enough, the
// app starts anyway and Victims decides on the next check.
func (p Policy) MakeRoom(r Reading, app string, expected int64) []Stop {
	if expected <= 0 {
		return nil
	}
	need, _, _ := p.shortage(r, expected, Shortage{})
	return pick(r, need, CauseMakeRoom, app, false)
}

// pick chooses victims in stopping order until need bytes are freed.
func pick(r Reading, need int64, cause Cause, exclude string, lastResort bool) []Stop {
	if need <= 0 {
		return nil
	}
	var cands []AppReading
	for _, a := range r.Apps {
		if !a.running() || a.RSS <= 0 || a.Mode == appfile.Always || a.Name == exclude {
			continue
		}
		if a.Connections > 0 && !a.Frozen && !lastResort {
			continue
		}
		cands = append(cands, a)
	}
	slices.SortFunc(cands, stopOrder)
	var stops []Stop
	for _, a := range cands {
		if need <= 0 {
			break
		}
		need -= a.RSS
		stops = append(stops, Stop{
			App:         a.Name,
			RSS:         a.RSS,
			Connections: a.Connections,
			LastResort:  a.Connections > 0 && !a.Frozen,
			Cause:       cause,
		})
	}
	return stops
}

// stopOrder sorts apps first-to-stop first: frozen apps (idle, holding
// memory for nothing), lowest priority and longest frozen first; then
// the others.
func stopOrder(a, b AppReading) int {
	if a.Frozen != b.Frozen {
		if a.Frozen {
			return -1
		}
		return 1
	}
	if a.Frozen {
		return cmp.Or(
			cmp.Compare(a.Priority, b.Priority),
			a.FrozenSince.Compare(b.FrozenSince),
			cmp.Compare(a.Name, b.Name),
		)
	}
	return cmp.Or(
		cmp.Compare(min(a.Connections, 1), min(b.Connections, 1)),
		cmp.Compare(a.Priority, b.Priority),
		a.LastActive.Compare(b.LastActive),
		cmp.Compare(a.Name, b.Name),
	)
}

// LimitAction is what to do with an app over its memory_max.
type LimitAction int

// The actions on an app over memory_max.
const (
	// Restart the app now: it is idle (no open connection), or it is an
	// always app far over its limit, which a restart serves better than a
	// stop.
	Restart LimitAction = iota + 1
	// StopNow: the app is far over its limit; stop it even with open
	// connections, before it takes the machine's memory.
	StopNow
)

// String returns the action's name for logs.
func (a LimitAction) String() string {
	switch a {
	case Restart:
		return "restart"
	case StopNow:
		return "stop"
	}
	return fmt.Sprintf("LimitAction(%d)", int(a))
}

// Limit is the decision to act on one app over its memory_max.
type Limit struct {
	// App is the app's name.
	App string
	// RSS is the app's tree RSS and Max its memory_max, in bytes.
	RSS, Max int64
	// Connections is the number of open connections the action cuts.
	Connections int
	// Action says what to do.
	Action LimitAction
}

// OverMax returns the apps over their memory_max that must be acted on now:
// restarted when idle, stopped at once when over FarOver times the limit.
// An app over its limit but busy, and not far over, is left alone until a
// later reading finds it idle.
func (p Policy) OverMax(r Reading) []Limit {
	far := p.FarOver
	if far <= 0 {
		far = 1.5
	}
	var out []Limit
	for _, a := range r.Apps {
		if !a.running() || a.MemoryMax <= 0 || a.RSS <= a.MemoryMax {
			continue
		}
		l := Limit{App: a.Name, RSS: a.RSS, Max: a.MemoryMax, Connections: a.Connections}
		switch {
		case float64(a.RSS) > far*float64(a.MemoryMax):
			l.Action = StopNow
			if a.Mode == appfile.Always {
				l.Action = Restart
			}
		case a.Connections == 0:
			l.Action = Restart
		default:
			continue
		}
		out = append(out, l)
	}
	return out
}
