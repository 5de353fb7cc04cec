package l4

// Observer learns about finished connections, for metrics. Its method is
// called once per spliced connection, from that connection's goroutine.
type Observer interface {
	// ConnectionClosed: a spliced connection to app ended; sent bytes went
	// from the client to the app, received bytes back.
	ConnectionClosed(app string, sent, received int64)
	// ConnectionRefused: a connection to app was closed without being
	// served, for reason (see RefusalReason).
	ConnectionRefused(app, reason string)
}
