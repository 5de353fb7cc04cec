package cron

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/dynapm/dynapm/appfile"
)

// jobEnv returns a job's environment: the daemon's, then (when the job
// holds the app up) PORT, then the app's env sorted by key. ${PORT} in the
// app's env is expanded only when there is a port: a job that does not wake
// the app gets the value as written.
func jobEnv(spec *appfile.Spec, port int, woken bool) []string {
	env := os.Environ()
	if woken {
		env = append(env, "PORT="+strconv.Itoa(port))
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		v := spec.Env[k]
		if woken {
			v = expandPort(v, port)
		}
		env = append(env, k+"="+v)
	}
	return env
}

// expandArgv returns argv with ${PORT} expanded in every element (a copy:
// the Spec is shared and immutable).
func expandArgv(argv []string, port int) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = expandPort(a, port)
	}
	return out
}

// expandPort replaces ${PORT} and $PORT (not followed by a name character)
// in s with port, as the lifecycle manager does for the app itself. Other
// dollar signs are left alone: they may be meant for the program or a shell.
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
