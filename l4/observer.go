package l4

// Observer learns about finished and turned-away connections, for
// metrics. Its methods are called once per connection, from that
// connection's goroutine.
type Observer interface {
	// ConnectionClosed: a spliced connection to app ended; sent bytes went
	// from the client to the app, received bytes back.
	ConnectionClosed(app string, sent, received int64)
	// ConnectionTurnedAway: a connection to app came from a source outside
	// its WakeFrom while app was not running, and was closed unserved.
	ConnectionTurnedAway(app string)
	// ConnectionRefused: a connection to app was closed without being
	// served, for reason (see RefusalReason).
	ConnectionRefused(app, reason string)
}
