package lifecycle

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/dynapm/dynapm/appfile"
)

// expandPort replaces ${PORT} and $PORT (not followed by a name character)
// in s with port. Other dollar signs are left alone: os.Expand would also
// rewrite $HOME or "pa$$word", and an env value or argv element may hold a
// literal dollar meant for the program.
func expandPort(s string, port int) string {
	if !strings.Contains(s, "$") {
		return s
	}
	p := strconv.Itoa(port)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "${PORT}"):
			b.WriteString(p)
			i += len("${PORT}") - 1
		case strings.HasPrefix(rest, "$PORT") && (len(rest) == len("$PORT") || !isNameByte(rest[len("$PORT")])):
			b.WriteString(p)
			i += len("$PORT") - 1
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isNameByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// buildEnv returns the program's environment: the daemon's, then PORT and
// INSTANCE (the instance's index, 0 for an app without scale), then the
// app's env (sorted by key, so the result is stable) with the port
// expanded. Later entries win for duplicate keys (os/exec keeps the last
// one), so an app file may still set PORT itself.
func buildEnv(spec *appfile.Spec, port, instance int) []string {
	env := append(os.Environ(), "PORT="+strconv.Itoa(port), "INSTANCE="+strconv.Itoa(instance))
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		env = append(env, k+"="+expandPort(spec.Env[k], port))
	}
	return env
}

// expandSpec returns spec with ${PORT} expanded in the command, so that an
// argv list run without a shell ("http.server", "${PORT}") gets the port too.
// The Spec itself is shared and immutable; this is a shallow copy.
func expandSpec(spec *appfile.Spec, port int) *appfile.Spec {
	s := *spec
	s.Command = make([]string, len(spec.Command))
	for i, arg := range spec.Command {
		s.Command[i] = expandPort(arg, port)
	}
	return &s
}

// AppEnv is the environment the Manager gives an app started on port, for a
// driver that runs a command for the app outside a start (the command
// driver's check at daemon start); $INSTANCE is 0 there.
func AppEnv(spec *appfile.Spec, port int) []string { return buildEnv(spec, port, 0) }
