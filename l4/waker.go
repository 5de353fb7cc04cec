package l4

import (
	"context"
	"net/netip"
	"time"
)

// Waker leases a ready backend for an app. lifecycle.Manager satisfies it.
type Waker interface {
	// Wake returns the address of a ready backend of app, starting the app
	// first if needed; it blocks while the app starts, until ctx ends or
	// the app's start_timeout runs out. On success the caller must call
	// release exactly once, when the connection closes.
	Wake(ctx context.Context, app string) (upstream netip.AddrPort, release func(), err error)
}

// ConnWaker is a Waker that may hand over, with the lease, a connection to
// the upstream that is already made: lifecycle.Manager gives the first
// connection that waited for a start the readiness probe's connection,
// which saves it a connect. When the Server's Waker implements it, a held
// connection uses that connection instead of dialing.
type ConnWaker interface {
	// WakeConn is Wake, with conn a connected socket's descriptor that the
	// caller owns, or -1 when there is none to take.
	WakeConn(ctx context.Context, app string) (upstream netip.AddrPort, conn int, release func(), err error)
}

// ReadyWaker is a Waker that can also lease a backend of an app that is
// ready now, without waiting. lifecycle.Manager satisfies it. When the
// Server's Waker implements it, a connection to a ready app on an address
// of its own is leased, connected and handed to the event loop by the
// accept loop itself, with no goroutine of its own; every other connection
// (a stopped or starting app, a connect that does not complete at once, an
// address shared by name) takes the usual path.
type ReadyWaker interface {
	// TryWake is Wake for an app that is ready, or that it can make ready
	// at once (a frozen app thawed without waiting): it returns at once,
	// false (and nothing to release) when the app would have to be waited
	// for.
	TryWake(app string) (upstream netip.AddrPort, release func(), ok bool)
}

// TrafficWaker is a Waker whose apps may count bytes moved, not open
// connections, as activity (Route.TrafficIdle). lifecycle.Manager
// satisfies it.
type TrafficWaker interface {
	// Traffic tells that bytes moved just now on connections leased to
	// the backend of app at upstream. Called from the sweeper (quiet.go),
	// once per backend per sweep at most.
	Traffic(app string, upstream netip.AddrPort)
}

// Route sends the connections of one listen address to one app.
type Route struct {
	// App is the app's name, passed to Waker.Wake.
	App string
	// SNI and Host pick this route on an address shared by several apps
	// (TLS server name, HTTP Host). Both empty: the address's default route.
	SNI  []string
	Host []string
	// ProxyProtocol is "", "v1" or "v2": the header sent to the upstream first.
	ProxyProtocol string
	// Handoff is "" (the Server accepts and splices), HandoffSocket (the
	// app's program accepts from the listening socket, handoff.go) or
	// HandoffInetd (a program per connection, inetd.go). A handed-off
	// address has this one route.
	Handoff string
	// MaxPrograms bounds the programs running at once for HandoffInetd.
	MaxPrograms int
	// UnavailableReply, when not empty, is written to a held client before
	// it is closed because its app could not be woken (or its upstream not
	// dialed): say an HTTP 503 with Retry-After. Empty means a bare close,
	// which keeps the proxy protocol-agnostic. Never sent during Shutdown.
	UnavailableReply []byte
	// WakeFrom, when not empty, limits the sources whose connections may
	// wake the app: a connection from elsewhere is served while the app
	// runs (leased through PassiveWaker, so it does not keep the app up)
	// and turned away otherwise (TurnedAway, UnavailableReply). Empty: any
	// source.
	WakeFrom []netip.Prefix
	// ClientIdleTimeout, when not zero, closes a spliced connection on
	// which no byte moved either way for that long (quiet.go).
	ClientIdleTimeout time.Duration
	// TrafficIdle, when not zero, is the app's idle_timeout under
	// idle_when: traffic: the bytes its connections move are told to the
	// Waker (TrafficWaker) at least every quarter of it, so that an open
	// but quiet connection no longer keeps the app up.
	TrafficIdle time.Duration
	// StartTimeout is how long, from its wake, a connection may wait for
	// a descriptor to dial its upstream with when the daemon has none
	// left (EMFILE, ENFILE): it is held and the dial retried meanwhile,
	// not closed. Zero means DefaultDialTimeout.
	StartTimeout time.Duration
	// MaxPending bounds the datagrams queued for the app while it wakes,
	// across its UDP addresses (DefaultUDPMaxPending when zero; also at
	// most UDPQueueBytes). FlowTimeout ends a UDP flow quiet either way
	// for that long (DefaultUDPFlowTimeout when zero). UDP addresses only.
	MaxPending  int
	FlowTimeout time.Duration
	// UnixUpstream, when set, is the socket file the app's program serves
	// on (a unix: upstream, or the $SOCKET DynaPM picked): connections are
	// dialed there, whatever address the lease names. UnixUpstreamUID is
	// the user the program runs as: a connection whose listener is someone
	// else's is refused (checkPeer).
	UnixUpstream    string
	UnixUpstreamUID uint32
	// Socket is how the socket file of a unix: listen address is made
	// (unix_listener.go); the address's first route sets it.
	Socket SocketFile
	// AccessLog: log one line per connection (app, client, bytes each
	// way, duration, how it ended) at info level.
	AccessLog bool
}
