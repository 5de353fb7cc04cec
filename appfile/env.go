package appfile

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Environ returns the environment of a program run for the app on port:
// the daemon's, then PORT, then vars (such as "INSTANCE=0"), then Env
// sorted by key (so the result is stable) with ${PORT} expanded. Later
// entries win for duplicate keys (os/exec keeps the last one), so an app
// file may still set PORT itself.
func (s *Spec) Environ(port int, vars ...string) []string {
	return s.EnvironSocket(port, "", vars...)
}

// EnvironSocket is Environ for a program that serves on the socket file
// socket (when not empty): SOCKET follows PORT, and ${SOCKET} is expanded
// in Env as ${PORT} is.
func (s *Spec) EnvironSocket(port int, socket string, vars ...string) []string {
	head := append(os.Environ(), "PORT="+strconv.Itoa(port))
	if socket != "" {
		head = append(head, "SOCKET="+socket)
	}
	return s.appendEnv(append(head, vars...), func(v string) string {
		v = ExpandPort(v, port)
		if socket != "" {
			v = ExpandVar(v, "SOCKET", socket)
		}
		return v
	})
}

// EnvironWithoutPort returns the environment of a program run for the app
// while it may be stopped (a cron job that does not wake it): the daemon's,
// then Env sorted by key with values as written, as there is no port to
// expand.
func (s *Spec) EnvironWithoutPort() []string {
	return s.appendEnv(os.Environ(), func(v string) string { return v })
}

// appendEnv appends Env to env as KEY=value, sorted by key, each value
// passed through value.
func (s *Spec) appendEnv(env []string, value func(string) string) []string {
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		env = append(env, k+"="+value(s.Env[k]))
	}
	return env
}

// ExpandPorts returns args with ${PORT} expanded in every element, as a
// copy: a Spec is shared and immutable.
func ExpandPorts(args []string, port int) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = ExpandPort(a, port)
	}
	return out
}

// ExpandPort replaces ${PORT} and $PORT (not followed by a name character)
// in s with port. Other dollar signs are left alone: os.Expand would also
// rewrite $HOME or "pa$$word", and an env value or argv element may hold a
// literal dollar meant for the program or a shell.
func ExpandPort(s string, port int) string {
	return ExpandVar(s, "PORT", strconv.Itoa(port))
}

// ExpandVar replaces ${name} and $name (not followed by a name character)
// in s with value, as ExpandPort does for PORT ($SOCKET, say).
func ExpandVar(s, name, value string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	braced, bare := "${"+name+"}", "$"+name
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, braced):
			b.WriteString(value)
			i += len(braced) - 1
		case strings.HasPrefix(rest, bare) && (len(rest) == len(bare) || !isNameByte(rest[len(bare)])):
			b.WriteString(value)
			i += len(bare) - 1
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isNameByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
