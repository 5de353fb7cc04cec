package lifecycle

import "errors"

// Errors returned by the Manager, wrapped with the app's name; test with
// errors.Is.
var (
	// ErrUnknownApp: no app of that name is configured (or it was removed).
	ErrUnknownApp = errors.New("unknown app")
	// ErrTooManyPending: max_pending callers already wait for the app.
	ErrTooManyPending = errors.New("too many pending connections")
	// ErrStartTimeout: the app was not ready within its start_timeout.
	ErrStartTimeout = errors.New("start timed out")
	// ErrBackoff: the app failed recently and is not started again until
	// its backoff delay is over.
	ErrBackoff = errors.New("backing off after failure")
	// ErrShuttingDown: the Manager is shutting down.
	ErrShuttingDown = errors.New("shutting down")
	// ErrUpstreamInUse: something already accepts connections on the
	// fixed upstream of an exec app about to be started, so it cannot be
	// the app's program; the start fails (and backs off).
	ErrUpstreamInUse = errors.New("upstream already in use")
	// ErrDisabled: the app was disabled (dynapm disable); it is not
	// started until it is enabled again.
	ErrDisabled = errors.New("disabled")
	// ErrStartFailed: the start failed (spawn error, exit before ready);
	// the message holds the cause.
	ErrStartFailed = errors.New("start failed")
)
