package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/dynapm/dynapm/settings"
)

// commonFlags are the flags every subcommand shares: where the app files,
// the state directory and the daemon's settings file are.
type commonFlags struct {
	fs     *flag.FlagSet
	apps   string
	state  string
	config string
	// stateFrom says where the state directory came from, for a message
	// about it: -state, state_dir in the settings file, DYNAPM_STATE or
	// the default.
	stateFrom string
}

// stateEnv names the environment variable that gives the state directory
// when neither -state nor a settings file does.
const stateEnv = "DYNAPM_STATE"

func newFlags(name string, stderr io.Writer) *commonFlags {
	f := &commonFlags{fs: flag.NewFlagSet("dynapm "+name, flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.fs.StringVar(&f.apps, "apps", "./apps.d", "directory of app files")
	f.fs.StringVar(&f.state, "state", "./.dynapm", "state directory: app logs and the admin socket (default $"+stateEnv+" if set)")
	f.fs.StringVar(&f.config, "config", "", "daemon settings file (YAML, TOML or JSON); optional")
	return f
}

// settings loads the settings file when one is given and lets the flags that
// were set on the command line override it. The state directory is, first
// found: -state, state_dir in the settings file, $DYNAPM_STATE, ./.dynapm.
func (f *commonFlags) settings() (settings.Settings, error) {
	s := settings.Default()
	f.stateFrom = "the default"
	if f.config != "" {
		var err error
		if s, err = settings.Load(f.config); err != nil {
			return s, fmt.Errorf("loading settings: %w", err)
		}
		if s.StateDir != settings.Default().StateDir {
			f.stateFrom = "state_dir in " + f.config
		}
	}
	if env := os.Getenv(stateEnv); env != "" && f.stateFrom == "the default" {
		s.StateDir, f.stateFrom = env, "from "+stateEnv
	}
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "apps":
			s.AppsDir = f.apps
		case "state":
			s.StateDir, f.stateFrom = f.state, "given by -state"
		}
	})
	return s, nil
}

// notRunningHint says, after "dynapm is not running", which state
// directory a client command looked in, why that one, and how to point it
// at another daemon's.
func (f *commonFlags) notRunningHint(stateDir string) string {
	where := stateDir
	if abs, err := filepath.Abs(stateDir); err == nil && abs != stateDir {
		where += " (" + abs + ")"
	}
	return fmt.Sprintf("looked in the state directory %s (%s); for a daemon with another one, "+
		"give the same -state DIR or -config FILE as the daemon has, or set %s=DIR", where, f.stateFrom, stateEnv)
}

// parseSettings parses a daemon-side command's flags and loads its
// settings. ok false means it failed; code is then the exit code, the
// problem already reported on stderr.
func parseSettings(name string, args []string, stderr io.Writer) (s settings.Settings, code int, ok bool) {
	f := newFlags(name, stderr)
	if err := f.fs.Parse(args); err != nil {
		return s, 2, false
	}
	// `dynapm check apps.d` must not quietly check ./apps.d instead.
	if f.fs.NArg() > 0 {
		usageError(f.fs, fmt.Sprintf("unexpected argument %q (the app files are given with -apps DIR)", f.fs.Arg(0)))
		return s, 2, false
	}
	s, err := f.settings()
	if err != nil {
		fmt.Fprintln(stderr, "dynapm:", err)
		return s, 1, false
	}
	return s, 0, true
}
