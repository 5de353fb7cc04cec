package admin

import (
	"context"
	"errors"
	"time"
)

// Controller is what the admin API needs from the daemon. main adapts the
// lifecycle manager to it, so that admin never imports lifecycle.
type Controller interface {
	// Apps reports every configured app, in a stable order.
	Apps() []App
	// Start starts the app and returns once it is ready, or why it is not.
	Start(ctx context.Context, name string) error
	// Stop stops the app and returns once it has stopped.
	Stop(ctx context.Context, name string) error
	// Restart stops the app if it runs and starts it again.
	Restart(ctx context.Context, name string) error
	// Override pins, unpins, disables or enables the app (o.Action), and
	// keeps the change across a daemon restart.
	Override(ctx context.Context, name string, o OverrideRequest) error
}

// OverrideRequest is a change of an app's pin or disable.
type OverrideRequest struct {
	// Action is "pin", "unpin", "disable" or "enable".
	Action string
	// For is how long a pin lasts; 0 until unpinned.
	For time.Duration
}

// overrideActions are the actions OverrideRequest takes.
var overrideActions = []string{"pin", "unpin", "disable", "enable"}

// ErrUnknownApp is wrapped by Controller errors about an app that is not
// configured; the API answers 404 for them. Client errors for a 404 match it
// too (errors.Is).
var ErrUnknownApp = errors.New("unknown app")

// ErrNotRunning is wrapped by Client errors when no daemon answers on the
// socket.
var ErrNotRunning = errors.New("dynapm is not running")
