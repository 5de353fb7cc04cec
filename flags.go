package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/dynapm/dynapm/settings"
)

// commonFlags are the flags every subcommand shares: where the app files,
// the state directory and the daemon's settings file are.
type commonFlags struct {
	fs     *flag.FlagSet
	apps   string
	state  string
	config string
}

func newFlags(name string, stderr io.Writer) *commonFlags {
	f := &commonFlags{fs: flag.NewFlagSet("dynapm "+name, flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.fs.StringVar(&f.apps, "apps", "./apps.d", "directory of app files")
	f.fs.StringVar(&f.state, "state", "./.dynapm", "state directory: app logs and the admin socket")
	f.fs.StringVar(&f.config, "config", "", "daemon settings file (YAML, TOML or JSON); optional")
	return f
}

// settings loads the settings file when one is given and lets the flags that
// were set on the command line override it.
func (f *commonFlags) settings() (settings.Settings, error) {
	s := settings.Default()
	if f.config != "" {
		var err error
		if s, err = settings.Load(f.config); err != nil {
			return s, fmt.Errorf("loading settings: %w", err)
		}
	}
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "apps":
			s.AppsDir = f.apps
		case "state":
			s.StateDir = f.state
		}
	})
	return s, nil
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
