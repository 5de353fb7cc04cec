package dockerdriver

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// watch follows the engine's events matching filter for one running app
// and hands them to onEvent, from one goroutine (counted by wg). A broken
// stream (engine restart) is resubscribed after delay with since set to
// the last event seen, so nothing in between is missed; onGap runs first,
// to look at the objects directly in case the engine lost events.
type watch struct {
	c       *client
	log     *slog.Logger
	filter  map[string][]string
	delay   time.Duration
	onEvent func(event)
	onGap   func(ctx context.Context)
	// persist keeps trying after a first subscription that failed, as
	// after a broken stream.
	persist bool
}

// start subscribes and returns once the engine has accepted the
// subscription, so that whatever the caller does next is seen; or returns
// the error of that first subscription (no goroutine is left then, unless
// persist).
func (w *watch) start(ctx context.Context, wg *sync.WaitGroup) error {
	ready := make(chan struct{})
	failed := make(chan error, 1)
	since := time.Now().UnixNano()
	wg.Add(1)
	go w.run(ctx, wg, since, ready, failed)
	select {
	case <-ready:
		return nil
	case err := <-failed:
		return err
	}
}

func (w *watch) run(ctx context.Context, wg *sync.WaitGroup, since int64, ready chan struct{}, failed chan<- error) {
	defer wg.Done()
	handle := func(e event) {
		if e.TimeNano > since {
			since = e.TimeNano
		}
		w.onEvent(e)
	}
	err := w.c.events(ctx, w.filter, "", ready, handle)
	select {
	case <-ready:
	default:
		failed <- err
		if !w.persist {
			return
		}
	}
	delay := w.delay
	for ctx.Err() == nil {
		w.log.Warn("Docker event stream broke; subscribing again", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		w.onGap(ctx)
		subscribed := make(chan struct{})
		err = w.c.events(ctx, w.filter, sinceNano(since+1), subscribed, handle)
		select {
		case <-subscribed:
			delay = w.delay // it worked for a while: retry soon
		default:
			// The engine stays away: retry less and less often, so a
			// stopped dockerd costs a log line a minute per app.
			delay = min(2*delay, maxReconnectDelay)
		}
	}
}

// maxReconnectDelay caps the wait between subscriptions while the engine
// stays unreachable.
const maxReconnectDelay = time.Minute
