package memory

import (
	"slices"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// app builds a running app reading for the policy tables: rssMiB of tree
// RSS, last active ago minutes before t0.
func app(name string, rssMiB int64, ago int) AppReading {
	return AppReading{
		AppUsage: AppUsage{
			Name:       name,
			Mode:       appfile.OnDemand,
			Pid:        1000 + len(name),
			LastActive: t0.Add(-time.Duration(ago) * time.Minute),
		},
		RSS: rssMiB * mib,
	}
}

func with(a AppReading, f func(*AppReading)) AppReading {
	f(&a)
	return a
}

func names(stops []Stop) []string {
	var out []string
	for _, s := range stops {
		out = append(out, s.App)
	}
	return out
}

func TestVictims(t *testing.T) {
	budget := Policy{Budget: 150 * mib, Margin: 10 * mib}
	floor := Policy{MinAvailableBytes: 100 * mib, Margin: 20 * mib}
	tests := []struct {
		name   string
		policy Policy
		avail  int64
		apps   []AppReading
		want   []string
		cause  Cause
	}{
		{
			name:   "UnderBudgetStopsNothing",
			policy: budget,
			apps:   []AppReading{app("a", 64, 3), app("b", 64, 2)},
		},
		{
			name:   "OverBudgetStopsLeastRecentlyActive",
			policy: budget,
			apps:   []AppReading{app("a", 64, 2), app("b", 64, 3), app("c", 64, 1)},
			want:   []string{"b"},
			cause:  CauseBudget,
		},
		{
			name:   "MarginMakesItStopOneMore",
			policy: budget, // 152 > 150; without c 144 is still above 150-10
			apps:   []AppReading{app("a", 80, 1), app("b", 64, 2), app("c", 8, 3)},
			want:   []string{"c", "b"},
			cause:  CauseBudget,
		},
		{
			name:   "OpenConnectionProtects",
			policy: budget,
			apps: []AppReading{
				with(app("old", 64, 9), func(a *AppReading) { a.Connections = 1 }),
				app("mid", 64, 5), app("new", 64, 1),
			},
			want:  []string{"mid"},
			cause: CauseBudget,
		},
		{
			name:   "LowerPriorityFirst",
			policy: budget,
			apps: []AppReading{
				with(app("old", 64, 9), func(a *AppReading) { a.Priority = 5 }),
				app("new", 64, 1), app("mid", 64, 5),
			},
			want:  []string{"mid"},
			cause: CauseBudget,
		},
		{
			name:   "NegativePriorityGoesBeforeDefault",
			policy: budget,
			apps: []AppReading{
				app("old", 64, 9),
				with(app("new", 64, 1), func(a *AppReading) { a.Priority = -1 }),
				app("mid", 64, 5),
			},
			want:  []string{"new"},
			cause: CauseBudget,
		},
		{
			name:   "AlwaysAppsAreNeverStoppedButCount",
			policy: budget,
			apps: []AppReading{
				with(app("core", 100, 99), func(a *AppReading) { a.Mode = appfile.Always }),
				app("p", 64, 1),
			},
			want:  []string{"p"},
			cause: CauseBudget,
		},
		{
			name:   "OnlyAlwaysAppsLeftStopsNothing",
			policy: budget,
			apps: []AppReading{
				with(app("core", 200, 99), func(a *AppReading) { a.Mode = appfile.Always }),
			},
		},
		{
			name:   "PersistentAppsAreCandidates",
			policy: budget,
			apps: []AppReading{
				with(app("p", 64, 9), func(a *AppReading) { a.Mode = appfile.Persistent }),
				app("a", 64, 1), app("b", 64, 2),
			},
			want:  []string{"p"},
			cause: CauseBudget,
		},
		{
			name:   "ConnectionsOnlyAsLastResort",
			policy: budget,
			apps: []AppReading{
				with(app("busy1", 100, 1), func(a *AppReading) { a.Connections = 3 }),
				with(app("busy2", 100, 9), func(a *AppReading) { a.Connections = 1 }),
				app("idle", 10, 1),
			},
			want:  []string{"idle", "busy2"},
			cause: CauseBudget,
		},
		{
			name:   "StoppingAppCountsAsFreed",
			policy: budget,
			apps: []AppReading{
				with(app("going", 64, 9), func(a *AppReading) { a.Stopping = true }),
				app("a", 64, 1), app("b", 64, 2),
			},
		},
		{
			name:   "StoppedAppsAreIgnored",
			policy: budget,
			apps: []AppReading{
				with(app("gone", 0, 9), func(a *AppReading) { a.Pid = 0 }),
				app("a", 64, 1), app("b", 64, 2), app("c", 64, 3),
			},
			want:  []string{"c"},
			cause: CauseBudget,
		},
		{
			name:   "BelowFloorStopsUntilFloorPlusMargin",
			policy: floor,
			avail:  90 * mib, // need 100+20-90 = 30
			apps:   []AppReading{app("a", 20, 3), app("b", 20, 2), app("c", 20, 1)},
			want:   []string{"a", "b"},
			cause:  CauseFloor,
		},
		{
			name:   "AboveFloorStopsNothing",
			policy: floor,
			avail:  101 * mib,
			apps:   []AppReading{app("a", 20, 3)},
		},
		{
			name:   "PercentFloorOfTotal",
			policy: Policy{MinAvailablePercent: 10, Margin: 1 * mib}, // floor 100 MiB of 1000
			avail:  99 * mib,
			apps:   []AppReading{app("a", 20, 3), app("b", 20, 9)},
			want:   []string{"b"},
			cause:  CauseFloor,
		},
		{
			name:   "ZeroPolicyNeverStops",
			policy: Policy{},
			avail:  1,
			apps:   []AppReading{app("a", 2000, 3)},
		},
		{
			name:   "NotEnoughToStopStopsAllItCan",
			policy: floor,
			avail:  10 * mib,
			apps: []AppReading{
				app("a", 20, 3),
				with(app("core", 500, 9), func(a *AppReading) { a.Mode = appfile.Always }),
			},
			want:  []string{"a"},
			cause: CauseFloor,
		},
		{
			name:   "TiesBreakByName",
			policy: budget,
			apps:   []AppReading{app("b", 64, 1), app("a", 64, 1), app("c", 64, 1)},
			want:   []string{"a"},
			cause:  CauseBudget,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			avail := tt.avail
			if avail == 0 {
				avail = 900 * mib
			}
			stops := tt.policy.Victims(Reading{Available: avail, Total: 1000 * mib, Apps: tt.apps}, Shortage{})
			if got := names(stops); !slices.Equal(got, tt.want) {
				t.Fatalf("victims = %v, want %v", got, tt.want)
			}
			for _, s := range stops {
				if s.Cause != tt.cause {
					t.Errorf("%s: cause %q, want %q", s.App, s.Cause, tt.cause)
				}
				if s.LastResort != (s.Connections > 0) {
					t.Errorf("%s: LastResort %v with %d connections", s.App, s.LastResort, s.Connections)
				}
				if s.RSS <= 0 {
					t.Errorf("%s: RSS %d", s.App, s.RSS)
				}
			}
		})
	}
}

func TestVictimsFlagConnectionsCut(t *testing.T) {
	p := Policy{Budget: 100 * mib, Margin: 1}
	stops := p.Victims(Reading{Available: 900 * mib, Total: 1000 * mib, Apps: []AppReading{
		with(app("busy", 200, 1), func(a *AppReading) { a.Connections = 7 }),
	}}, Shortage{})
	if len(stops) != 1 || !stops[0].LastResort || stops[0].Connections != 7 {
		t.Fatalf("stops = %+v, want busy as last resort cutting 7 connections", stops)
	}
}

// Between the limit and its margin, only a shortage already under way stops
// apps: that is the hysteresis across checks.
func TestShortageLastsUntilPastTheMargin(t *testing.T) {
	floor := Policy{MinAvailableBytes: 100 * mib, Margin: 20 * mib}
	budget := Policy{Budget: 150 * mib, Margin: 10 * mib}
	apps := []AppReading{app("a", 30, 3), app("b", 30, 2), app("c", 85, 1)} // 145 MiB
	tests := []struct {
		name   string
		policy Policy
		avail  int64
		during Shortage
		want   []string
		now    Shortage
	}{
		{"FloorBetweenLimitAndMarginWithoutShortage", floor, 110 * mib, Shortage{}, nil, Shortage{}},
		{"FloorBetweenLimitAndMarginDuringShortage", floor, 110 * mib, Shortage{Floor: true}, []string{"a"}, Shortage{Floor: true}},
		{"FloorPastTheMarginEndsShortage", floor, 120 * mib, Shortage{Floor: true}, nil, Shortage{}},
		{"FloorCrossed", floor, 90 * mib, Shortage{}, []string{"a"}, Shortage{Floor: true}},
		{"BudgetBetweenLimitAndMarginWithoutShortage", budget, 900 * mib, Shortage{}, nil, Shortage{}},
		{"BudgetBetweenLimitAndMarginDuringShortage", budget, 900 * mib, Shortage{Budget: true}, []string{"a"}, Shortage{Budget: true}},
		{"BudgetShortageDoesNotKeepTheFloorShort", floor, 110 * mib, Shortage{Budget: true}, nil, Shortage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Reading{Available: tt.avail, Total: 1000 * mib, Apps: apps}
			if got := names(tt.policy.Victims(r, tt.during)); !slices.Equal(got, tt.want) {
				t.Errorf("victims = %v, want %v", got, tt.want)
			}
			if _, _, now := tt.policy.shortage(r, 0, tt.during); now != tt.now {
				t.Errorf("shortage after the reading = %+v, want %+v", now, tt.now)
			}
		})
	}
	// Under budget-margin the budget shortage is over.
	under := []AppReading{app("a", 30, 3), app("b", 30, 2), app("c", 75, 1)} // 135 < 140
	if _, _, now := budget.shortage(Reading{Available: 900 * mib, Total: 1000 * mib, Apps: under}, 0, Shortage{Budget: true}); now != (Shortage{}) {
		t.Errorf("shortage under budget-margin = %+v, want none", now)
	}
}

func TestDefaultMarginIsFivePercent(t *testing.T) {
	p := Policy{Budget: 200 * mib} // margin 10 MiB: stop until sum <= 190
	apps := []AppReading{app("a", 100, 1), app("b", 95, 2), app("c", 6, 3)}
	// 201 MiB; stopping c leaves 195 > 190, so b goes too.
	if got := names(p.Victims(Reading{Available: 900 * mib, Total: 1000 * mib, Apps: apps}, Shortage{})); !slices.Equal(got, []string{"c", "b"}) {
		t.Fatalf("victims = %v, want [c b]", got)
	}
}

func TestMakeRoom(t *testing.T) {
	p := Policy{Budget: 150 * mib, Margin: 10 * mib}
	tests := []struct {
		name     string
		start    string
		expected int64
		avail    int64
		apps     []AppReading
		want     []string
	}{
		{
			name: "FitsStopsNothing", start: "new", expected: 20 * mib,
			apps: []AppReading{app("a", 64, 3), app("b", 64, 2)},
		},
		{
			name: "UnknownSizeStopsNothing", start: "new", expected: 0,
			apps: []AppReading{app("a", 100, 3), app("b", 100, 2)},
		},
		{
			name: "StopsLeastRecentlyActiveIdleApp", start: "new", expected: 64 * mib,
			apps: []AppReading{app("a", 64, 3), app("b", 64, 2)},
			want: []string{"a"},
		},
		{
			name: "NeverTheStartingAppItself", start: "a", expected: 64 * mib,
			apps: []AppReading{
				with(app("a", 64, 9), func(a *AppReading) { a.Pid = 0; a.RSS = 0 }),
				app("b", 64, 3), app("c", 64, 2),
			},
			want: []string{"b"},
		},
		{
			name: "NeverCutsConnections", start: "new", expected: 64 * mib,
			apps: []AppReading{
				with(app("a", 64, 3), func(a *AppReading) { a.Connections = 1 }),
				with(app("b", 64, 2), func(a *AppReading) { a.Connections = 1 }),
			},
		},
		{
			name: "FloorCountsTheExpectedSize", start: "new", expected: 50 * mib,
			avail: 140 * mib, // floor 100: 140-50 = 90 < 100, need 100+10-90 = 20
			apps:  []AppReading{app("a", 15, 3), app("b", 15, 2), app("c", 15, 1)},
			want:  []string{"a", "b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp := p
			avail := tt.avail
			if avail == 0 {
				avail = 900 * mib
			} else {
				pp.MinAvailableBytes = 100 * mib
			}
			stops := pp.MakeRoom(Reading{Available: avail, Total: 1000 * mib, Apps: tt.apps}, tt.start, tt.expected)
			if got := names(stops); !slices.Equal(got, tt.want) {
				t.Fatalf("make room = %v, want %v", got, tt.want)
			}
			for _, s := range stops {
				if s.Cause != CauseMakeRoom || s.LastResort {
					t.Errorf("%+v: want cause %q without last resort", s, CauseMakeRoom)
				}
			}
		})
	}
}

func TestOverMax(t *testing.T) {
	limited := func(a AppReading, maxMiB int64, conns int) AppReading {
		a.MemoryMax = maxMiB * mib
		a.Connections = conns
		return a
	}
	tests := []struct {
		name string
		app  AppReading
		want LimitAction // 0: no action
	}{
		{"UnderLimit", limited(app("a", 50, 1), 64, 0), 0},
		{"NoLimit", limited(app("a", 500, 1), 0, 0), 0},
		{"OverAndIdleRestarts", limited(app("a", 70, 1), 64, 0), Restart},
		{"OverAndBusyWaits", limited(app("a", 70, 1), 64, 2), 0},
		{"FarOverStopsEvenWhenBusy", limited(app("a", 100, 1), 64, 2), StopNow},
		{"FarOverAlwaysAppRestarts", with(limited(app("a", 100, 1), 64, 2), func(a *AppReading) { a.Mode = appfile.Always }), Restart},
		{"StoppingAppIsLeftAlone", with(limited(app("a", 100, 1), 64, 0), func(a *AppReading) { a.Stopping = true }), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Policy{}.OverMax(Reading{Apps: []AppReading{tt.app}})
			if tt.want == 0 {
				if len(got) != 0 {
					t.Fatalf("OverMax = %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 || got[0].Action != tt.want || got[0].App != "a" || got[0].RSS != tt.app.RSS || got[0].Max != tt.app.MemoryMax {
				t.Fatalf("OverMax = %+v, want %v", got, tt.want)
			}
		})
	}
}

func TestOverMaxFarOverFactor(t *testing.T) {
	a := app("a", 70, 1)
	a.MemoryMax, a.Connections = 64*mib, 1
	got := Policy{FarOver: 1.05}.OverMax(Reading{Apps: []AppReading{a}})
	if len(got) != 1 || got[0].Action != StopNow {
		t.Fatalf("OverMax with FarOver 1.05 = %+v, want StopNow", got)
	}
}

// frozen marks a reading frozen since ago minutes before t0.
func frozen(a AppReading, ago int) AppReading {
	a.Frozen, a.FrozenSince = true, t0.Add(-time.Duration(ago)*time.Minute)
	return a
}

// Frozen apps hold memory for nothing: they go first, before running apps
// of a lower priority or idle for longer, the lowest priority and the
// longest frozen first; their quiet connections do not protect them.
func TestVictimsStopFrozenAppsFirst(t *testing.T) {
	p := Policy{Budget: 10 * mib, Margin: 1}
	apps := []AppReading{
		with(app("running", 64, 99), func(a *AppReading) { a.Priority = -5 }),
		frozen(app("recent", 64, 1), 1),
		frozen(app("long", 64, 2), 30),
		frozen(with(app("low", 64, 1), func(a *AppReading) { a.Priority = -1 }), 1),
		with(frozen(app("open", 64, 1), 2), func(a *AppReading) { a.Connections = 2 }),
	}
	stops := p.Victims(Reading{Available: 900 * mib, Total: 1000 * mib, Apps: apps}, Shortage{})
	if got, want := names(stops), []string{"low", "long", "open", "recent", "running"}; !slices.Equal(got, want) {
		t.Fatalf("victims = %v, want %v", got, want)
	}
	for _, s := range stops[:4] {
		if s.LastResort {
			t.Errorf("%s, frozen, flagged a last resort", s.App)
		}
	}
	// Making room does not cut connections, but a frozen app's are no
	// obstacle.
	room := p.MakeRoom(Reading{Available: 900 * mib, Total: 1000 * mib, Apps: apps[4:]}, "new", 64*mib)
	if got := names(room); !slices.Equal(got, []string{"open"}) {
		t.Errorf("MakeRoom = %v, want the frozen app with connections", got)
	}
}
