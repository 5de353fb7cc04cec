package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/admin"
)

// The client commands talk to a running daemon over its admin socket,
// STATE/dynapm.sock; -state DIR or -config FILE says where STATE is.

// clientFlags parses a client command's flags, with an app name among them
// when withName is set ("start web -state DIR" and "start -state DIR web"
// both work), and returns a client for the daemon's socket.
func clientFlags(f *commonFlags, args []string, withName bool) (*admin.Client, string, error) {
	if err := f.fs.Parse(args); err != nil {
		return nil, "", errUsage // the flag package has printed it
	}
	var name string
	if withName {
		if f.fs.NArg() == 0 {
			return nil, "", usageError(f.fs, "missing app name")
		}
		name = f.fs.Arg(0)
		if err := f.fs.Parse(f.fs.Args()[1:]); err != nil {
			return nil, "", errUsage
		}
	}
	if f.fs.NArg() > 0 {
		return nil, "", usageError(f.fs, fmt.Sprintf("unexpected argument %q", f.fs.Arg(0)))
	}
	s, err := f.settings()
	if err != nil {
		return nil, "", err
	}
	return &admin.Client{Socket: admin.SocketPath(s.StateDir), NotRunningHint: f.notRunningHint(s.StateDir)}, name, nil
}

// errUsage marks a command line that could not be used, already reported
// with the usage; its exit code is 2.
var errUsage = errors.New("usage")

func usageError(fs *flag.FlagSet, msg string) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), msg)
	fs.Usage()
	return errUsage
}

// exitCode reports err and maps it to an exit code: 0 ok, 2 usage, 1 any
// other failure (the daemon not running, an unknown app, a failed start).
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, admin.ErrNotRunning):
		fmt.Fprintln(stderr, err) // it names dynapm already
		return 1
	}
	fmt.Fprintln(stderr, "dynapm:", err)
	return 1
}

// signalContext ends on SIGINT or SIGTERM, so that ^C ends `logs -f`
// quietly and abandons a `start` wait (the daemon goes on starting).
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// statusCommand prints every app's status: a table, or JSON with -json.
func statusCommand(args []string, stdout, stderr io.Writer) int {
	f := newFlags("status", stderr)
	asJSON := f.fs.Bool("json", false, "print a JSON array, one object per app")
	c, _, err := clientFlags(f, args, false)
	if err != nil {
		return exitCode(err, stderr)
	}
	ctx, cancel := signalContext()
	defer cancel()
	apps, err := c.Apps(ctx)
	if err != nil {
		return exitCode(err, stderr)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if apps == nil {
			apps = []admin.App{}
		}
		return exitCode(enc.Encode(apps), stderr)
	}
	return exitCode(writeStatusTable(stdout, apps, time.Now()), stderr)
}

// startCommand starts an app and waits until it is ready, or says why not.
func startCommand(args []string, stdout, stderr io.Writer) int {
	return actionCommand("start", args, stdout, stderr, (*admin.Client).Start)
}

// stopCommand stops an app and waits until it has stopped.
func stopCommand(args []string, stdout, stderr io.Writer) int {
	return actionCommand("stop", args, stdout, stderr, (*admin.Client).Stop)
}

// restartCommand restarts an app and waits until it is ready again.
func restartCommand(args []string, stdout, stderr io.Writer) int {
	return actionCommand("restart", args, stdout, stderr, (*admin.Client).Restart)
}

// pinCommand keeps an app up, for -for or until unpinned.
func pinCommand(args []string, stdout, stderr io.Writer) int {
	f := newFlags("pin NAME", stderr)
	d := f.fs.Duration("for", 0, "unpin after this long (such as 2h); 0 keeps the pin until dynapm unpin")
	return runAction("pin", f, args, stdout, stderr, func(c *admin.Client, ctx context.Context, name string) (admin.App, error) {
		if *d < 0 {
			return admin.App{}, usageError(f.fs, "-for must be ≥ 0")
		}
		return c.Override(ctx, name, admin.OverrideRequest{Action: "pin", For: *d})
	})
}

// overrideCommand runs unpin, disable or enable.
func overrideCommand(verb string) func(args []string, stdout, stderr io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		return actionCommand(verb, args, stdout, stderr, func(c *admin.Client, ctx context.Context, name string) (admin.App, error) {
			return c.Override(ctx, name, admin.OverrideRequest{Action: verb})
		})
	}
}

func actionCommand(verb string, args []string, stdout, stderr io.Writer,
	do func(*admin.Client, context.Context, string) (admin.App, error)) int {
	return runAction(verb, newFlags(verb+" NAME", stderr), args, stdout, stderr, do)
}

// runAction parses an action's flags, runs it and reports the app's state
// afterwards, or why it failed with the end of the app's log.
func runAction(verb string, f *commonFlags, args []string, stdout, stderr io.Writer,
	do func(*admin.Client, context.Context, string) (admin.App, error)) int {
	c, name, err := clientFlags(f, args, true)
	if err != nil {
		return exitCode(err, stderr)
	}
	ctx, cancel := signalContext()
	defer cancel()
	wasRunning := true
	if verb == "stop" {
		// Asked first, so that a stop of a stopped app says so; an error
		// here is the stop's to report.
		if a, err := c.App(ctx, name); err == nil && (a.State == "stopped" || a.State == "failed") {
			wasRunning = false
		}
	}
	begun := time.Now()
	a, err := do(c, ctx, name)
	if err != nil {
		// The daemon's answer names the app and the action already.
		code := exitCode(err, stderr)
		var apiErr *admin.APIError
		if errors.As(err, &apiErr) && apiErr.LogTail != "" {
			fmt.Fprintf(stderr, "last lines of its log (dynapm logs %s):\n", name)
			for _, l := range strings.Split(strings.TrimRight(apiErr.LogTail, "\n"), "\n") {
				fmt.Fprintln(stderr, "  "+l)
			}
		}
		return code
	}
	took := time.Since(begun)
	if verb == "stop" {
		if !wasRunning {
			fmt.Fprintf(stdout, "%s was not running\n", a.Name)
			return 0
		}
		// The stop ended; a connection may have woken the app since.
		fmt.Fprintf(stdout, "%s: stopped in %.1fs", a.Name, took.Seconds())
		if a.LastStopKilled {
			fmt.Fprint(stdout, ": killed after stop_timeout")
		}
		if a.State != "stopped" {
			fmt.Fprintf(stdout, "; %s again since (a connection or a schedule woke it)", a.State)
		}
		fmt.Fprintln(stdout)
		return 0
	}
	fmt.Fprintf(stdout, "%s: %s", a.Name, stateCell(a, time.Now()))
	if a.Pid != 0 {
		fmt.Fprintf(stdout, " (pid %d)", a.Pid)
	}
	fmt.Fprintf(stdout, " in %s\n", took.Round(time.Millisecond))
	return 0
}

// logsCommand prints the end of an app's log, and with -f follows it.
func logsCommand(args []string, stdout, stderr io.Writer) int {
	f := newFlags("logs NAME", stderr)
	n := f.fs.Int("n", 50, "number of lines to print")
	follow := f.fs.Bool("f", false, "follow: go on printing lines as they are written, until interrupted")
	c, name, err := clientFlags(f, args, true)
	if err != nil {
		return exitCode(err, stderr)
	}
	if *n < 0 {
		return exitCode(usageError(f.fs, "-n must be ≥ 0"), stderr)
	}
	ctx, cancel := signalContext()
	defer cancel()
	if err := c.Logs(ctx, name, *n, *follow, stdout); err != nil {
		return exitCode(err, stderr)
	}
	return 0
}
