// Package l4 is DynaPM's TCP proxy: one listener per listen address, each
// accepted connection routed to an app, held while the app wakes, then
// spliced to the app's upstream in both directions.
//
// l4 knows nothing about processes. It asks a Waker for a ready backend and
// tells it, through the release function, when the connection is over.
//
// # Following a connection
//
// Every connection takes the same steps, in this order. serve.go strings
// them together, top to bottom; each step has a file of its own:
//
//  1. accept (accept.go; loop_accept_linux.go when the event loops accept):
//     accept4, the client's socket staying out of Go's netpoller.
//  2. route (route.go; peek.go, sniff_tls.go and sniff_http.go on an
//     address shared by name): pick the app, after reading the TLS server
//     name or HTTP Host when several apps share the address.
//  3. wake (wake.go): lease a ready backend from the Waker, waiting while
//     the app starts.
//  4. dial (dial.go): connect to the upstream with raw system calls,
//     through a gate per upstream, with retries.
//  5. preamble (preamble.go, proxyproto.go): the PROXY header and the
//     peeked bytes, which go to the upstream first.
//  6. splice (splice.go): give both sockets to an event loop
//     (loop_linux.go), which sends the preamble, then moves the bytes
//     (splice(2) once a direction carries bulk) until both directions end,
//     and releases the lease (conn.go: finish).
//
// There are two ways through the steps. A connection to a ready app on an
// address of its own takes them all at once, on the thread that accepted
// it, with no goroutine (serveReady), unless the upstream does not take the
// connect at once. Every other connection gets a goroutine for the steps
// that may wait (serveHeld, then serveUpstream): reading the name, waking
// the app, retrying a connect.
//
// The goroutines' data path (copy.go: two goroutines per connection on Go's
// netpoller) is the fall-back, for Server.DataPath "goroutines" or when no
// event loop could be started.
//
// A listen address may be a socket file ("unix:/path", unix_listener.go)
// and a route's upstream too (Route.UnixUpstream): the steps are the
// same, on Unix stream sockets (the stream type in conn.go).
//
// l4 runs on Linux only: epoll (with EPOLLEXCLUSIVE), eventfd, accept4,
// splice(2) and pipes sized with F_SETPIPE_SZ.
package l4
