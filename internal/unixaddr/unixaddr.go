// Package unixaddr spells a Unix stream socket file as an address,
// "unix:/run/app.sock", as app files (appfile) and the listeners and dials
// that use it (l4) both read it.
package unixaddr

import "strings"

// Prefix starts an address that is a socket file.
const Prefix = "unix:"

// Path returns the socket file of a "unix:/path" address, or "" for
// another address.
func Path(addr string) string {
	p, ok := strings.CutPrefix(addr, Prefix)
	if !ok {
		return ""
	}
	return p
}
