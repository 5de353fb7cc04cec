package admin

import (
	"context"
	"errors"
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
}

// ErrUnknownApp is wrapped by Controller errors about an app that is not
// configured; the API answers 404 for them. Client errors for a 404 match it
// too (errors.Is).
var ErrUnknownApp = errors.New("unknown app")

// ErrNotRunning is wrapped by Client errors when no daemon answers on the
// socket.
var ErrNotRunning = errors.New("dynapm is not running")
