package appfile

import (
	"sort"
	"strings"
	"syscall"
)

// signals are the stop signals an app file may name. Programs commonly take
// SIGINT or SIGQUIT for a graceful stop (nginx: QUIT, many CLIs: INT).
var signals = map[string]syscall.Signal{
	"ABRT":  syscall.SIGABRT,
	"ALRM":  syscall.SIGALRM,
	"HUP":   syscall.SIGHUP,
	"INT":   syscall.SIGINT,
	"KILL":  syscall.SIGKILL,
	"QUIT":  syscall.SIGQUIT,
	"TERM":  syscall.SIGTERM,
	"USR1":  syscall.SIGUSR1,
	"USR2":  syscall.SIGUSR2,
	"WINCH": syscall.SIGWINCH,
}

// parseSignal accepts a name such as SIGTERM, TERM or sigterm.
func parseSignal(s string) (syscall.Signal, bool) {
	name := strings.ToUpper(strings.TrimSpace(s))
	sig, ok := signals[strings.TrimPrefix(name, "SIG")]
	return sig, ok
}

// signalNames lists the accepted names for error messages.
func signalNames() string {
	names := make([]string, 0, len(signals))
	for n := range signals {
		names = append(names, "SIG"+n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
