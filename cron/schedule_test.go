package cron

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin without depending on the host's zoneinfo
)

func TestNextFireAcrossDSTChanges(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name, spec, from, want string
	}{
		// Europe/Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST; 02:30
		// does not exist that day. robfig/cron skips the day; like Vixie
		// cron, the job runs at the jump instead.
		{"daily before spring forward", "CRON_TZ=Europe/Berlin 30 2 * * *", "2026-03-28T00:00:00Z", "2026-03-28T01:30:00Z"},
		{"daily at the jump over its time", "CRON_TZ=Europe/Berlin 30 2 * * *", "2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z"},
		{"daily after the jump", "CRON_TZ=Europe/Berlin 30 2 * * *", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"},
		{"minutely in the missing hour fires once", "CRON_TZ=Europe/Berlin * 2 * * *", "2026-03-29T00:59:00Z", "2026-03-29T01:00:00Z"},
		{"minutely in the missing hour, next day", "CRON_TZ=Europe/Berlin * 2 * * *", "2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"},
		{"jump on a day the schedule skips", "CRON_TZ=Europe/Berlin 30 2 * * 1", "2026-03-28T00:00:00Z", "2026-03-30T00:30:00Z"},
		{"new york jump", "CRON_TZ=America/New_York 30 2 * * *", "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"},
		{"hourly over the missing hour", "CRON_TZ=Europe/Berlin 30 * * * *", "2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"},
		// 2026-10-25 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
		// A daily job fires once, at the first 02:30 (CEST).
		{"daily into fall back", "CRON_TZ=Europe/Berlin 30 2 * * *", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"},
		{"daily does not fire twice", "CRON_TZ=Europe/Berlin 30 2 * * *", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
		{"minutely in a named hour skips the repeated hour", "CRON_TZ=Europe/Berlin * 2 * * *", "2026-10-25T00:59:00Z", "2026-10-26T01:00:00Z"},
		{"hourly fires in both 02:30s", "CRON_TZ=Europe/Berlin 30 * * * *", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"},
		{"hourly after the repeat", "CRON_TZ=Europe/Berlin 30 * * * *", "2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z"},
		// No prefix: the Scheduler's Location (here Europe/Berlin).
		{"location default", "30 2 * * *", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
		{"prefix beats location", "CRON_TZ=UTC 30 2 * * *", "2026-10-25T00:30:00Z", "2026-10-25T02:30:00Z"},
		{"weekdays at nine", "CRON_TZ=Europe/Berlin 0 9 * * 1-5", "2026-03-27T09:00:00Z", "2026-03-30T07:00:00Z"},
		{"every is zone-free", "@every 90m", "2026-03-29T00:30:00Z", "2026-03-29T02:00:00Z"},
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sched, err := parseSchedule(tt.spec, berlin)
			if err != nil {
				t.Fatal(err)
			}
			if got := sched.Next(utc(tt.from)); !got.Equal(utc(tt.want)) {
				t.Errorf("Next(%s) = %s (%s), want %s", tt.from, got.UTC().Format(time.RFC3339), got, tt.want)
			}
		})
	}
}

func TestParseScheduleRejectsWhatTheAppFileRejects(t *testing.T) {
	for _, spec := range []string{
		"0 0 9 * * 1-5",                  // six fields
		"61 * * * *",                     // bad field
		"CRON_TZ=Mars/Olympus 0 9 * * *", // unknown zone
		"CRON_TZ=UTC",                    // zone and nothing else: robfig panics
		"@fortnightly",
	} {
		if _, err := parseSchedule(spec, time.UTC); err == nil || !strings.Contains(err.Error(), "parsing schedule") {
			t.Errorf("parseSchedule(%q) = %v, want a parsing error", spec, err)
		}
	}
}
