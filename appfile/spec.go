// Package appfile reads and validates the app files in apps.d: one file per
// app, YAML, TOML or JSON, named NAME.yaml (.yml, .toml, .json).
//
// A Spec is immutable once returned: the daemon hands the same *Spec to the
// proxy, the lifecycle manager and the scheduler, and a reload replaces it
// with a new one instead of editing it.
package appfile

import (
	"net/netip"
	"syscall"
	"time"
)

// Mode says when an app runs.
type Mode string

// The modes an app file may name.
const (
	// OnDemand apps start on a connection (or a cron wake) and stop when idle.
	OnDemand Mode = "on-demand"
	// Persistent apps start with the daemon and stop only under memory pressure.
	Persistent Mode = "persistent"
	// Always apps start with the daemon, are never stopped, and restart on crash.
	Always Mode = "always"
)

// Defaults for keys an app file leaves out.
const (
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultStartTimeout = 30 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	DefaultMaxPending   = 1024
)

// Spec is one validated app file.
type Spec struct {
	// Name is the file name's stem: [a-z0-9][a-z0-9_-]*.
	Name string
	// File is the absolute path of the app file.
	File string

	// Listen holds the addresses DynaPM listens on for this app, each a
	// literal host:port as given (validated by net.SplitHostPort and a
	// numeric port), with "/udp" after a UDP address (a "/tcp" suffix is
	// left out: TCP is the default). SplitProto parts them.
	Listen []string
	// Upstream is where the program listens, host:port without a suffix
	// or "unix:/path" (UnixUpstream):
	// the program serves it in every protocol the app listens on
	// (Protocols). Empty means DynaPM picks a loopback port free in all of
	// them at each start and passes it as $PORT.
	Upstream string
	// Command is the argv to run. A string in the file becomes
	// ["/bin/sh", "-c", string].
	Command []string
	// Dir is the absolute working directory (relative paths in the file are
	// relative to the app file's directory). Defaults to that directory.
	Dir string
	// Env is added to the daemon's environment. Values may hold ${PORT},
	// expanded at each start.
	Env map[string]string

	Mode         Mode
	IdleTimeout  time.Duration
	StartTimeout time.Duration
	StopSignal   syscall.Signal
	StopTimeout  time.Duration
	// Ready says how a start is judged ready (ready.go).
	Ready Ready
	// MaxPending bounds the connections held while the app starts, and
	// the datagrams queued for it.
	MaxPending int
	// IdleWhen says what makes the app idle: no open connection (the
	// default) or no byte moved for IdleTimeout (idle.go).
	IdleWhen IdleWhen
	// ClientIdleTimeout closes a proxied connection on which no byte moved
	// either way for that long; 0 means never.
	ClientIdleTimeout time.Duration
	// IdleAction is what idleness does: stop (the default) or freeze.
	IdleAction IdleAction
	// FreezeTimeout stops an app frozen that long; 0 means never.
	FreezeTimeout time.Duration
	// WakeFrom, when not empty, limits the sources whose connections wake
	// the app (or thaw it); others are turned away while it sleeps and
	// served while it runs.
	WakeFrom []netip.Prefix
	// Socket is how the socket files of unix: listen addresses are made.
	Socket Socket
	// UDPFlowTimeout ends a UDP flow after this long without a datagram
	// either way.
	UDPFlowTimeout time.Duration
	// Scale runs several instances behind the app's listen addresses (the
	// zero value: one instance).
	Scale Scale

	// Match picks this app on a listen address shared with other apps.
	Match Match
	// ProxyProtocol is "", "v1" or "v2".
	ProxyProtocol string
	// Handoff is HandoffProxy (the default), HandoffSocket or
	// HandoffInetd: who accepts the app's connections (handoff.go).
	Handoff string
	// AccessLog, when set, overrides the daemon's access_log setting for
	// this app: a log line per connection.
	AccessLog *bool

	// MemoryPriority orders stops under memory pressure: apps with a
	// higher priority are stopped later. Default 0.
	MemoryPriority int
	// MemoryMax is the most tree RSS the app may use, in bytes: above it the
	// app is restarted at its next idle moment (stopped at once when far
	// over). 0 means no limit.
	MemoryMax int64

	// Needs names the apps that must be ready before this app's program
	// starts, and stay up while it runs.
	Needs []string
	// Hooks are commands run around starts and stops, each bounded by
	// HookTimeout (hooks.go).
	Hooks       Hooks
	HookTimeout time.Duration
	// Exclusive names the group of apps of which at most one runs at a
	// time; "" for none.
	Exclusive string

	// Wake lists scheduled starts.
	Wake []Wake
	// Jobs lists scheduled commands.
	Jobs []Job

	// Driver is how the app runs: DriverExec (the default), DriverDocker,
	// DriverSwarm or DriverCommand. See drivers.go for the keys each uses.
	Driver string
	// Containers names the Docker containers of a docker app, started in
	// order and stopped in reverse.
	Containers []string
	// Service names the Swarm service of a swarm app.
	Service string
	// Replicas is how many tasks a woken swarm app runs (default 1).
	Replicas int
	// StartCommand, StopCommand and CheckCommand drive a command app; a
	// string in the file becomes ["/bin/sh", "-c", string]. CheckCommand
	// is optional.
	StartCommand []string
	StopCommand  []string
	CheckCommand []string
	// UnavailableReply, when not empty, is written to a held client whose
	// app cannot serve it (the start failed, the app is backing off, or
	// start_timeout ran out) before the connection is closed: an HTTP 503,
	// a Redis -LOADING error... Empty means a bare close.
	UnavailableReply string
	// User and Group, when set, are the account the program runs as; only
	// a daemon running as root can honour them.
	User, Group string
	// Limits are resource limits applied to the program; zero fields are
	// left as the daemon has them.
	Limits Limits
	// Umask is the program's file mode creation mask as an octal string
	// ("027"), or empty to inherit the daemon's.
	Umask string
}

// Limits are per-app resource limits (setrlimit). Zero means unset.
type Limits struct {
	// NoFile is RLIMIT_NOFILE, the most open file descriptors.
	NoFile int
	// NProc is RLIMIT_NPROC, the most processes of the app's user.
	NProc int
}

// Match selects an app on a shared listen address.
type Match struct {
	SNI  []string
	Host []string
}

// Wake is one scheduled start.
type Wake struct {
	Cron string
	// Keep is how long the app stays up after a scheduled wake at least.
	Keep time.Duration
}

// Job is one scheduled command run to completion.
type Job struct {
	Cron     string
	Command  []string
	Timeout  time.Duration
	NeedsApp bool
}
