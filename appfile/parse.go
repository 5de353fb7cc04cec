package appfile

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode"
)

// topKeys are the keys of an app file, in the order messages list them:
// the keys every app has first, then those of the drivers and the guards.
var topKeys = []string{
	"listen", "upstream", "command", "dir", "env", "mode",
	"idle_timeout", "start_timeout", "stop_signal", "stop_timeout",
	"ready", "max_pending", "match", "proxy_protocol", "wake", "jobs",
	"memory_priority", "memory_max", "scale", "needs", "hooks", "hook_timeout", "exclusive",
	"idle_when", "client_idle_timeout", "idle_action", "freeze_timeout", "wake_from",
	"driver", "container", "service", "replicas", "start", "stop", "check",
	"unavailable_reply", "user", "group", "limits", "umask", "handoff", "access_log",
	"udp_flow_timeout", "socket_mode", "socket_user", "socket_group",
}

var matchKeys = []string{"sni", "host"}

// Load reads the app file at path and parses it.
func Load(path string) (*Spec, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("reading app file: %v", err)}
	}
	return Parse(path, data)
}

// Parse parses and validates one app file's bytes. path names the file: its
// extension picks the format, its stem is the app name and its directory is
// the base of a relative dir. The error, when not nil, joins one *FieldError
// per problem found (errors.Join), so that every problem in the file is
// reported at once.
func Parse(path string, data []byte) (*Spec, error) {
	d := &decoder{file: path}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("resolving path: %v", err)}
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if !ValidName(name) {
		d.errorf("", "app name %q (the file name without its extension) must match %s", name, nameRule)
	}
	raw, err := ReadMap(path, data)
	if err != nil {
		// The name error, if any, still deserves its own line.
		d.errs = append(d.errs, err)
		return nil, d.err()
	}
	s := &Spec{
		Name:           name,
		File:           abs,
		Dir:            filepath.Dir(abs),
		Env:            map[string]string{},
		Mode:           OnDemand,
		IdleTimeout:    DefaultIdleTimeout,
		StartTimeout:   DefaultStartTimeout,
		StopSignal:     syscall.SIGTERM,
		StopTimeout:    DefaultStopTimeout,
		MaxPending:     DefaultMaxPending,
		Handoff:        HandoffProxy,
		HookTimeout:    DefaultHookTimeout,
		UDPFlowTimeout: DefaultUDPFlowTimeout,
		Socket:         Socket{Mode: DefaultSocketMode},
	}
	idleDefaults(s)
	d.mapping("", raw, topKeys)
	s.Driver = d.driverOf(raw)
	if s.Driver == DriverSwarm {
		s.Replicas = DefaultReplicas
	}
	d.driverMismatch(s.Driver, raw)
	for _, req := range requiredKeys(s.Driver) {
		if _, ok := raw[req]; !ok {
			d.errorf(req, "%s", missingMessage(s.Driver, req))
		}
	}
	for _, key := range topKeys {
		v, ok := raw[key]
		if !ok || (v == nil && key != "listen" && key != "command") {
			continue // absent, or null: keep the default
		}
		d.field(s, key, v)
	}
	d.crossChecks(s)
	d.handoffChecks(s, raw)
	d.unixChecks(s, raw)
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	return s, nil
}

// field decodes one top-level key into s.
func (d *decoder) field(s *Spec, key string, v any) {
	switch key {
	case "listen":
		s.Listen, _ = d.stringList(key, v, "a host:port string or unix:/path", d.listenAddr)
		for i, l := range s.Listen {
			s.Listen[i] = canonicalListen(l)
		}
		d.distinctListen(s.Listen)
	case "upstream":
		s.Upstream, _ = d.upstream(key, v)
	case "command":
		s.Command, _ = d.argv(key, v)
	case "dir":
		d.dir(s, key, v)
	case "env":
		d.env(s, key, v)
	case "mode":
		if m, ok := choice(d, key, v, "one of on-demand, persistent, always", OnDemand, Persistent, Always); ok {
			s.Mode = m
		}
	case "idle_timeout":
		s.IdleTimeout, _ = d.duration(key, v, false)
	case "start_timeout":
		s.StartTimeout, _ = d.duration(key, v, false)
	case "stop_timeout":
		s.StopTimeout, _ = d.duration(key, v, false)
	case "stop_signal":
		str, ok := d.str(key, v, "a signal name such as SIGTERM")
		if !ok {
			return
		}
		sig, ok := parseSignal(str)
		if !ok {
			d.errorf(key, "expected one of %s, got %s", signalNames(), Quote(str))
			return
		}
		s.StopSignal = sig
	case "ready":
		d.ready(s, key, v)
	case "max_pending":
		s.MaxPending, _ = d.integer(key, v, 1, 1<<20)
	case "match":
		d.match(s, key, v)
	case "proxy_protocol":
		str, ok := d.str(key, v, `"v1" or "v2"`)
		if ok && str != "v1" && str != "v2" {
			d.errorf(key, `expected "v1" or "v2", got %s`, Quote(str))
			return
		}
		s.ProxyProtocol = str
	case "memory_priority":
		s.MemoryPriority, _ = d.integer(key, v, -1000, 1000)
	case "memory_max":
		s.MemoryMax = d.size(key, v)
	case "wake":
		s.Wake = d.wake(key, v)
	case "jobs":
		s.Jobs = d.jobs(key, v)
	case "scale":
		d.scale(s, key, v)
	case "needs":
		d.needs(s, key, v)
	case "handoff":
		d.handoff(s, key, v)
	case "hooks":
		d.hooks(s, key, v)
	case "exclusive":
		d.exclusive(s, key, v)
	case "hook_timeout":
		s.HookTimeout, _ = d.duration(key, v, false)
	case "udp_flow_timeout":
		d.udpFlowTimeout(s, key, v)
	case "socket_mode", "socket_user", "socket_group":
		d.socketField(s, key, v)
	case "unavailable_reply", "user", "group", "limits", "umask":
		d.guardField(s, key, v)
	case "idle_when", "client_idle_timeout", "idle_action", "freeze_timeout", "wake_from":
		d.idleField(s, key, v)
	case "access_log":
		if b, ok := d.boolean(key, v); ok {
			s.AccessLog = &b
		}
	default:
		d.driverField(s, key, v)
	}
}

// distinctListen refuses a listen entry that names a socket an earlier
// entry names too, pointing at the first such entry. Entries are grouped
// by port, so that a long list costs no more than its length.
func (d *decoder) distinctListen(addrs []string) {
	type claims struct {
		first, wildcard int            // first entry, first wildcard entry; -1 for none
		hosts           map[string]int // host to its first entry
	}
	type socket struct {
		port uint16
		udp  bool
		path string
	}
	byPort := map[socket]*claims{}
	for i, text := range addrs {
		a, err := parseAddr(text)
		if err != nil {
			continue // listenAddr reported it
		}
		k := socket{a.port, a.isUDP(), a.path}
		c := byPort[k]
		if c == nil {
			c = &claims{first: i, wildcard: -1, hosts: map[string]int{}}
			byPort[k] = c
		}
		j := -1 // the first earlier entry a overlaps
		if a.host == "" {
			j = c.first
		} else {
			j = c.wildcard
			if h, ok := c.hosts[a.host]; ok && (j < 0 || h < j) {
				j = h
			}
		}
		if j >= 0 && j < i {
			d.errorf(index("listen", i), "%s overlaps %s (listen[%d]): each address can be bound once", Quote(text), Quote(addrs[j]), j)
		}
		if a.host == "" && c.wildcard < 0 {
			c.wildcard = i
		}
		if _, ok := c.hosts[a.host]; !ok && a.host != "" {
			c.hosts[a.host] = i
		}
	}
}

// dir resolves the working directory against the app file's directory and
// insists that it exists now: a missing dir would fail every wake later,
// far from the typo that caused it.
func (d *decoder) dir(s *Spec, key string, v any) {
	str, ok := d.str(key, v, "a directory path")
	if !ok {
		return
	}
	if str == "" {
		d.errorf(key, "expected a directory path, got an empty string")
		return
	}
	p := str
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.Dir, p)
	}
	p = filepath.Clean(p)
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		d.errorf(key, "expected an existing directory, got %s (%s): %v", Quote(str), Quote(p), unwrapPathError(err))
	case !fi.IsDir():
		d.errorf(key, "expected a directory, got %s (%s), which is not a directory", Quote(str), Quote(p))
	default:
		s.Dir = p
	}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func (d *decoder) env(s *Spec, key string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		// kindOf, not Describe: `env: TOKEN=...` would put the value in the log.
		d.errorf(key, "expected a mapping of NAME: value, got %s", kindOf(v))
		return
	}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		val := m[name]
		f := join(key, Key(name))
		if !envNameRE.MatchString(name) {
			d.errorf(f, "expected an environment variable name (letters, digits and _, not starting with a digit), got %s", Quote(name))
			continue
		}
		if str, ok := d.envValue(f, val); ok {
			s.Env[name] = str
		}
	}
}

// httpPath validates a readiness path: an absolute request path that can be
// sent on a request line as is.
func (d *decoder) httpPath(field string, v any) (string, bool) {
	str, ok := d.str(field, v, "a path such as /healthz")
	if !ok {
		return "", false
	}
	if !strings.HasPrefix(str, "/") || strings.IndexFunc(str, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0 {
		d.errorf(field, "expected a path starting with / and without spaces, such as /healthz, got %s", Quote(str))
		return "", false
	}
	return str, true
}

func (d *decoder) match(s *Spec, key string, v any) {
	m, ok := d.mapping(key, v, matchKeys)
	if !ok {
		return
	}
	sni, hasSNI := m["sni"]
	host, hasHost := m["host"]
	switch {
	case hasSNI && hasHost:
		d.errorf(key, "expected one of sni or host, got both (an address is shared either by TLS SNI or by HTTP Host)")
		return
	case !hasSNI && !hasHost:
		if len(m) == 0 {
			d.errorf(key, "expected sni: [names] or host: [names], got an empty mapping")
		}
		return
	}
	check := func(field, name string) bool {
		if !validHostname(name, true) {
			d.errorf(field, "expected a lowercase host name such as app.example.com or *.example.com, got %s", Quote(name))
			return false
		}
		return true
	}
	if hasSNI {
		s.Match.SNI, _ = d.stringList(join(key, "sni"), sni, "a host name", check)
	} else {
		s.Match.Host, _ = d.stringList(join(key, "host"), host, "a host name", check)
	}
}

// crossChecks looks at fields together once each has been read.
func (d *decoder) crossChecks(s *Spec) {
	d.scaleChecks(s)
	d.idleChecks(s)
	d.exclusiveChecks(s)
	d.execSize(s)
	d.udpChecks(s)
	if s.Upstream == "" {
		return
	}
	d.checkUpstreamProto(s)
	for _, up := range s.upstreamAddrs() {
		for i, l := range s.Listen {
			if a, err := parseAddr(l); err == nil && a.overlaps(up) {
				d.errorf("upstream", "%s is also listen[%d] %s: DynaPM would proxy the app to itself", Quote(s.Upstream), i, Quote(l))
			}
		}
	}
}
