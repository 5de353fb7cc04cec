// Package cmddriver runs apps through shell commands of their own: start,
// stop and an optional check (driver: command in the app file). It is the
// way to put pm2 apps, systemd units or anything else with a start and a
// stop command behind DynaPM.
//
// Contract with the commands:
//   - start must return once the app has been launched (systemctl start,
//     pm2 start, "prog &"); a start that does not return within the app's
//     start_timeout fails the start and is killed with its process group.
//     A non-zero exit fails the start.
//   - stop must return once the app is stopping; it is bounded by the app's
//     stop_timeout. When check is given, Stop then waits (within the same
//     stop_timeout) until check reports the app gone.
//   - check exits 0 while the app runs and non-zero when it does not. With
//     a check, DynaPM adopts an app that runs already when DynaPM learns of
//     it, does not run start for an app that runs already, and runs check
//     every CheckInterval while the app is up, so that an app stopped by
//     someone else (pm2 stop, systemctl stop) is seen as stopped and the
//     next connection starts it again. Without a check, DynaPM believes the
//     app runs from start until stop.
//
// The commands run in the app's dir with the app's environment ($PORT is
// the upstream's port), each in its own process group; start's output goes
// to the app's log, check's and stop's are discarded (check runs often).
package cmddriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/lifecycle"
)

// Defaults for Config fields left zero.
const (
	// DefaultCheckInterval is how often check runs while an app is up: often
	// enough that an outside stop is noticed within seconds, rarely enough
	// that a systemctl per app costs nothing.
	DefaultCheckInterval = 5 * time.Second
	// DefaultCheckTimeout bounds one run of check.
	DefaultCheckTimeout = 10 * time.Second
)

// Config holds a Driver's settings. Zero values take the defaults.
type Config struct {
	// Logger receives the driver's log; nil means slog.Default().
	Logger *slog.Logger
	// CheckInterval is how often check runs while an app is up.
	CheckInterval time.Duration
	// CheckTimeout bounds one run of check.
	CheckTimeout time.Duration
	// StopPollInterval is how often check runs while waiting for a stopped
	// app to be gone (default 100ms).
	StopPollInterval time.Duration
}

// Driver is the command driver. It satisfies lifecycle.Driver and
// lifecycle.RunningChecker. It holds no state between calls.
type Driver struct {
	cfg Config
}

// New returns a command driver.
func New(cfg Config) *Driver {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if cfg.StopPollInterval <= 0 {
		cfg.StopPollInterval = 100 * time.Millisecond
	}
	return &Driver{cfg: cfg}
}

// Start runs the app's start command, unless its check reports it running
// already, and returns a Process that lasts until Stop (or until check
// reports the app gone).
func (d *Driver) Start(ctx context.Context, req lifecycle.StartRequest) (lifecycle.Process, error) {
	spec := req.Spec
	if len(spec.StartCommand) == 0 || len(spec.StopCommand) == 0 {
		return nil, errors.New("driver: command needs start and stop commands")
	}
	// The Manager bounds readiness, not the launch: a start command that
	// never returns is bounded here.
	if spec.StartTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.StartTimeout)
		defer cancel()
	}
	env := req.Env
	if env == nil {
		env = []string{}
	}
	log := d.cfg.Logger.With("app", spec.Name)
	running := false
	if len(spec.CheckCommand) > 0 {
		var err error
		if running, err = d.check(ctx, spec, env); err != nil {
			return nil, err
		}
	}
	if running {
		log.Info("check reports the app running: adopting it without running start")
	} else {
		if err := run(ctx, spec.StartCommand, spec.Dir, env, req.Log); err != nil {
			return nil, fmt.Errorf("start command: %w", err)
		}
	}
	p := &process{
		driver: d,
		spec:   spec,
		env:    env,
		log:    log,
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if len(spec.CheckCommand) > 0 {
		p.watching.Add(1)
		go p.watch()
	}
	return p, nil
}

// Running runs spec's check, when it has one, and reports whether the app
// runs. Without a check it reports false: nothing says so.
func (d *Driver) Running(ctx context.Context, spec *appfile.Spec) (bool, error) {
	if len(spec.CheckCommand) == 0 {
		return false, nil
	}
	running, err := d.check(ctx, spec, specEnv(spec))
	if err != nil {
		return false, err
	}
	return running, nil
}

// check runs the check command once: exit 0 means running, another exit
// status not running, anything else (no shell, timeout) is an error.
func (d *Driver) check(ctx context.Context, spec *appfile.Spec, env []string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CheckTimeout)
	defer cancel()
	err := run(ctx, spec.CheckCommand, spec.Dir, env, nil)
	var exit *exitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit):
		return false, nil
	}
	return false, fmt.Errorf("check command: %w", err)
}

// specEnv is the environment of a command run outside a start (adoption
// when DynaPM learns of the app): the one a start would get.
func specEnv(spec *appfile.Spec) []string {
	port := 0
	if ap, err := netip.ParseAddrPort(spec.Upstream); err == nil {
		port = int(ap.Port())
	} else if _, p, err := net.SplitHostPort(spec.Upstream); err == nil {
		port, _ = strconv.Atoi(p)
	}
	return lifecycle.AppEnv(spec, port)
}
