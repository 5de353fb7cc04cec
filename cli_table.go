package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dynapm/dynapm/admin"
)

// maxErrorWidth bounds the STATUS and LAST-ERROR columns so one long text
// does not push the table off the screen; `status -json` has the whole.
const maxErrorWidth = 60

// writeStatusTable prints apps as an aligned table, times relative to now.
func writeStatusTable(w io.Writer, apps []admin.App, now time.Time) error {
	if len(apps) == 0 {
		_, err := fmt.Fprintln(w, "no apps configured")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUPTIME\tCONNS\tHELD\tRSS\tLAST-ACTIVE\tSTOPS-IN\tNEXT-WAKE\tLAST-JOB\tLISTEN\tSTATUS\tLAST-ERROR")
	for _, a := range apps {
		errWidth := maxErrorWidth
		if a.State == StateError {
			// Why the app is not served at all: the whole of it, in
			// the last column.
			errWidth = len(a.LastError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			a.Name, stateCell(a, now), pidCell(a.Pid), uptimeCell(a), a.Connections, a.Pending,
			bytesCell(a.RSSBytes), agoCell(a.LastActivity, now), stopsInCell(a.StopsAt, now), inCell(a.NextWake, now), jobCell(a.LastJob, now),
			dash(strings.Join(a.Listen, ",")), dash(oneLine(a.Status, maxErrorWidth)), dash(oneLine(a.LastError, errWidth)))
		writeInstanceRows(tw, a)
	}
	return tw.Flush()
}

// writeInstanceRows prints a line per instance under an app that runs more
// than one (scale), named NAME#INDEX, with the instance's upstream in the
// LISTEN column: where that copy of the program listens. An app with one
// instance keeps its single row.
func writeInstanceRows(w io.Writer, a admin.App) {
	if len(a.Instances) < 2 {
		return
	}
	for _, in := range a.Instances {
		uptime := "-"
		if !in.StartedAt.IsZero() || in.UptimeSeconds != 0 {
			uptime = shortDuration(time.Duration(in.UptimeSeconds * float64(time.Second)))
		}
		fmt.Fprintf(w, "  %s#%d\t%s\t%s\t%s\t%d\t-\t-\t-\t-\t-\t-\t%s\t%s\t-\n",
			a.Name, in.Index, in.State, pidCell(in.Pid), uptime, in.Connections, dash(in.Upstream), dash(oneLine(in.Status, maxErrorWidth)))
	}
}

// stateCell is the app's state with what an operator or another app says
// of it: "ready (pinned until 21:30)", "stopped (disabled)", "ready
// (needed by web)".
func stateCell(a admin.App, now time.Time) string {
	var why []string
	switch {
	case a.Disabled:
		why = append(why, "disabled")
	case a.Pinned && a.PinnedUntil.IsZero():
		why = append(why, "pinned")
	case a.Pinned:
		why = append(why, "pinned until "+clockCell(a.PinnedUntil, now))
	}
	if len(a.KeptUpBy) > 0 {
		why = append(why, "needed by "+strings.Join(a.KeptUpBy, ","))
	}
	if len(why) == 0 {
		return a.State
	}
	return a.State + " (" + strings.Join(why, ", ") + ")"
}

// clockCell is a time of day in local time (21:30), with the date when it
// is not within the next day.
func clockCell(t, now time.Time) string {
	t = t.Local()
	if t.Sub(now) < 24*time.Hour {
		return t.Format("15:04")
	}
	return t.Format("2006-01-02 15:04")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pidCell(pid int) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprint(pid)
}

func uptimeCell(a admin.App) string {
	if a.StartedAt.IsZero() && a.UptimeSeconds == 0 {
		return "-"
	}
	return shortDuration(time.Duration(a.UptimeSeconds * float64(time.Second)))
}

func agoCell(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return shortDuration(now.Sub(t)) + " ago"
}

// stopsInCell is how long until an idle stop: "4m12s"; "-" when none is
// due, "now" once its moment has come.
func stopsInCell(t, now time.Time) string {
	switch {
	case t.IsZero():
		return "-"
	case !t.After(now):
		return "now"
	}
	return shortDuration(t.Sub(now))
}

func inCell(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return "in " + shortDuration(t.Sub(now))
}

// jobCell is the last job run in brief: how it ended ("exit 0", "exit 2",
// or "failed" when it did not exit on its own: timed out, killed, never
// started), how long it took and how long ago it finished; "-" when no job
// has run. `status -json` has the command and the error text.
func jobCell(j *admin.Job, now time.Time) string {
	if j == nil {
		return "-"
	}
	outcome := "failed"
	if j.ExitCode >= 0 {
		outcome = fmt.Sprintf("exit %d", j.ExitCode)
	}
	took := time.Duration(j.Seconds * float64(time.Second))
	ended := j.Started
	if !ended.IsZero() {
		ended = ended.Add(took)
	}
	return fmt.Sprintf("%s %s %s", outcome, jobDuration(took), agoCell(ended, now))
}

// jobDuration is how long a job ran: 350ms, 1.2s, then as shortDuration.
func jobDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", max(d, 0).Milliseconds())
	}
	if d = d.Round(100 * time.Millisecond); d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return shortDuration(d)
}

// shortDuration is a duration in at most two units: 45s, 3m12s, 5h07m,
// 12d03h.
func shortDuration(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	}
}

// bytesCell is a size in binary units (12.5M), "-" when unknown.
func bytesCell(b uint64) string {
	if b == 0 {
		return "-"
	}
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	v, suffix := float64(b), "KMGTPE"
	i := -1
	for v >= unit && i < len(suffix)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%c", v, suffix[i])
}

// oneLine folds s onto one line of at most width runes.
func oneLine(s string, width int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > width {
		return string(r[:width-1]) + "…"
	}
	return s
}
