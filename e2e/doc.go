// Package e2e holds DynaPM's end-to-end tests. Each runs the dynapm binary,
// built once with the race detector by TestMain, as a user would: real app
// programs (internal/testapp), real sockets on 127.0.0.1, real signals,
// files and client commands. The tests of package main's own functions
// (flags, dispatch, the client commands' output, a daemon wired in the test
// process) stay beside it, at the repository root.
//
// go test -race ./... runs them with the rest; go test -race ./e2e/ alone.
package e2e
