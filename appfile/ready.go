package appfile

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The ready: key: how DynaPM tells that a started program serves. One kind
// at most; without one, a TCP connect to the upstream.

// Ready kinds, as Ready.Kind names them and the file spells their keys.
const (
	ReadyConnect = "connect" // no key: a TCP connect to the upstream
	ReadyHTTP    = "http"
	ReadyNotify  = "notify"
	ReadyCommand = "command"
	ReadyLog     = "log"
	ReadyTCP     = "tcp"
)

// readyKeys are the keys under ready:, one per kind but the default.
var readyKeys = []string{ReadyHTTP, ReadyNotify, ReadyCommand, ReadyLog, ReadyTCP}

var readyTCPKeys = []string{"send", "expect"}

// Bounds of the ready: values: what is sent and looked for travels in one
// small read or write, and an expression runs on every output line while a
// program starts.
const (
	maxReadySend   = 4096
	maxReadyExpect = 1024
	maxReadyLog    = 1024
)

// Ready says how to tell that a started program serves. At most one field
// is set; the zero value is a TCP connect to the upstream.
type Ready struct {
	// HTTP, when set, is a path that must answer 2xx or 3xx to a GET on the
	// upstream.
	HTTP string
	// Notify waits for READY=1 on the NOTIFY_SOCKET DynaPM gives the
	// program (systemd's sd_notify protocol).
	Notify bool
	// Command is run until it exits 0 (a string in the file becomes
	// ["/bin/sh", "-c", string]); ${PORT} expands at each run.
	Command []string
	// Log matches the program's output lines; the first match is ready.
	Log *regexp.Regexp
	// TCP sends Send on a connection to the upstream and waits for Expect
	// in what comes back.
	TCP TCPCheck
}

// TCPCheck is ready: {tcp: {send, expect}}: HAProxy's tcp-check send and
// expect string.
type TCPCheck struct {
	// Send is written once connected; empty for a program that speaks
	// first (an SSH or SMTP banner).
	Send string
	// Expect must appear in the bytes the program sends back, anywhere in
	// them; it is never empty in a valid TCP check.
	Expect string
}

// Kind names the check: ReadyConnect when none is given.
func (r Ready) Kind() string {
	switch {
	case r.HTTP != "":
		return ReadyHTTP
	case r.Notify:
		return ReadyNotify
	case len(r.Command) > 0:
		return ReadyCommand
	case r.Log != nil:
		return ReadyLog
	case r.TCP.Expect != "":
		return ReadyTCP
	}
	return ReadyConnect
}

// Equal reports whether r and o check the same way.
func (r Ready) Equal(o Ready) bool {
	return r.HTTP == o.HTTP && r.Notify == o.Notify &&
		slices.Equal(r.Command, o.Command) &&
		(r.Log == nil) == (o.Log == nil) && (r.Log == nil || r.Log.String() == o.Log.String()) &&
		r.TCP == o.TCP
}

// readyDrivers says which drivers can honour a kind; the others work with
// every driver.
var readyDrivers = map[string]struct {
	drivers []string
	why     string
}{
	ReadyNotify: {[]string{DriverExec}, "only a program the exec driver starts gets a NOTIFY_SOCKET"},
	ReadyLog:    {[]string{DriverExec, DriverCommand}, "a container's output does not pass through DynaPM"},
}

// ready decodes the ready: key into s.Ready. s.Driver must be known.
func (d *decoder) ready(s *Spec, key string, v any) {
	m, ok := d.mapping(key, v, readyKeys)
	if !ok {
		return
	}
	var given []string
	for _, k := range readyKeys {
		val, present := m[k]
		if !present || val == nil {
			continue
		}
		f := join(key, k)
		switch k {
		case ReadyHTTP:
			s.Ready.HTTP, ok = d.httpPath(f, val)
		case ReadyNotify:
			s.Ready.Notify, ok = d.boolean(f, val)
			if !s.Ready.Notify {
				continue // notify: false asks for nothing
			}
		case ReadyCommand:
			s.Ready.Command, ok = d.argv(f, val)
		case ReadyLog:
			s.Ready.Log, ok = d.readyLog(f, val)
		case ReadyTCP:
			s.Ready.TCP, ok = d.readyTCP(f, val)
		}
		if !ok {
			continue
		}
		if rd, limited := readyDrivers[k]; limited && !slices.Contains(rd.drivers, s.Driver) {
			d.errorf(f, "not with driver: %s: %s", s.Driver, rd.why)
		}
		given = append(given, k)
	}
	if len(given) > 1 {
		d.errorf(key, "expected one of %s, got %s: a start is judged ready one way", strings.Join(readyKeys, ", "), strings.Join(given, " and "))
	}
}

// readyLog compiles a ready.log expression (Go's regexp syntax, RE2).
func (d *decoder) readyLog(field string, v any) (*regexp.Regexp, bool) {
	str, ok := d.str(field, v, "a regular expression such as \"ready to accept connections\"")
	if !ok {
		return nil, false
	}
	if str == "" || len(str) > maxReadyLog {
		d.errorf(field, "expected a regular expression of 1 to %d bytes, got %d bytes", maxReadyLog, len(str))
		return nil, false
	}
	re, err := regexp.Compile(str)
	if err != nil {
		d.errorf(field, "expected a regular expression (Go's syntax), got %s: %s", Quote(str), libraryMessage(err.Error()))
		return nil, false
	}
	return re, true
}

// readyTCP decodes ready.tcp: an expect string, and what to send first.
func (d *decoder) readyTCP(field string, v any) (TCPCheck, bool) {
	m, ok := d.mapping(field, v, readyTCPKeys)
	if !ok {
		return TCPCheck{}, false
	}
	var c TCPCheck
	good := true
	if raw, present := m["send"]; present && raw != nil {
		f := join(field, "send")
		str, isStr := d.str(f, raw, `the bytes to send, such as "PING\r\n"`)
		switch {
		case !isStr:
			good = false
		case len(str) > maxReadySend:
			d.errorf(f, "expected at most %d bytes, got %d", maxReadySend, len(str))
			good = false
		default:
			c.Send = str
		}
	}
	raw, present := m["expect"]
	f := join(field, "expect")
	if !present || raw == nil {
		d.errorf(f, `required key is missing: the bytes the program answers with, such as "+PONG"`)
		return TCPCheck{}, false
	}
	str, isStr := d.str(f, raw, `the bytes the program answers with, such as "+PONG"`)
	switch {
	case !isStr:
		good = false
	case str == "" || len(str) > maxReadyExpect:
		d.errorf(f, "expected 1 to %d bytes, got %d", maxReadyExpect, len(str))
		good = false
	default:
		c.Expect = str
	}
	return c, good
}

// String describes r for messages and logs.
func (r Ready) String() string {
	switch r.Kind() {
	case ReadyHTTP:
		return "http " + r.HTTP
	case ReadyCommand:
		return fmt.Sprintf("command %q", r.Command)
	case ReadyLog:
		return fmt.Sprintf("log %q", r.Log.String())
	case ReadyTCP:
		return fmt.Sprintf("tcp send %q expect %q", r.TCP.Send, r.TCP.Expect)
	}
	return r.Kind()
}
