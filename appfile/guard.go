package appfile

import (
	"strconv"
	"strings"
)

// The keys that guard what an app may do and what its clients see when it
// cannot serve: unavailable_reply, user, group, limits and umask.

// maxUnavailableReply bounds unavailable_reply: it is written to a socket
// with a short deadline, and a reply that does not fit a socket buffer
// would be cut.
const maxUnavailableReply = 4096

var limitsKeys = []string{"nofile", "nproc"}

// guardField decodes one of the guard keys into s.
func (d *decoder) guardField(s *Spec, key string, v any) {
	switch key {
	case "unavailable_reply":
		str, ok := d.str(key, v, "a string of bytes to send, such as \"HTTP/1.1 503 Service Unavailable\\r\\n...\"")
		if ok && len(str) > maxUnavailableReply {
			d.errorf(key, "expected at most %d bytes, got %d", maxUnavailableReply, len(str))
			return
		}
		s.UnavailableReply = str
	case "user", "group":
		str, ok := d.str(key, v, "a name or a numeric id")
		if !ok {
			return
		}
		if str == "" || strings.ContainsAny(str, ":/ \t\n") {
			d.errorf(key, "expected a %s name or a numeric id, got %s", key, Quote(str))
			return
		}
		if key == "user" {
			s.User = str
		} else {
			s.Group = str
		}
	case "limits":
		m, ok := d.mapping(key, v, limitsKeys)
		if !ok {
			return
		}
		if n, present := m["nofile"]; present && n != nil {
			s.Limits.NoFile, _ = d.integer(join(key, "nofile"), n, 1, 1<<30)
		}
		if n, present := m["nproc"]; present && n != nil {
			s.Limits.NProc, _ = d.integer(join(key, "nproc"), n, 1, 1<<30)
		}
	case "umask":
		// A string: YAML reads an unquoted 027 as the decimal 27 (or the
		// octal 23, depending on the parser), which is never what was meant.
		str, ok := d.str(key, v, `an octal string such as "027"`)
		if !ok {
			return
		}
		n, err := strconv.ParseUint(str, 8, 32)
		if err != nil || n > 0o777 || str == "" {
			d.errorf(key, `expected an octal mask from "000" to "777" such as "027", got %s`, Quote(str))
			return
		}
		s.Umask = "0" + strconv.FormatUint(n, 8)
	}
}
