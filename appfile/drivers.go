package appfile

import (
	"slices"
	"strings"
)

// The drivers an app file may name in driver:.
const (
	// DriverExec runs command as a child process of the daemon.
	DriverExec = "exec"
	// DriverDocker starts and stops existing Docker containers.
	DriverDocker = "docker"
	// DriverSwarm scales a Docker Swarm service between 0 and replicas.
	DriverSwarm = "swarm"
	// DriverCommand runs start, stop and check shell commands.
	DriverCommand = "command"
)

// DefaultReplicas is the replica count of a woken swarm app.
const DefaultReplicas = 1

// driverKeys lists, per driver, the keys it requires and the driver-specific
// keys it accepts. A driver-specific key under another driver is an error:
// it would be silently ignored, which hides a wrong driver: line.
var driverKeys = map[string]struct{ required, allowed []string }{
	DriverExec:    {required: []string{"command"}, allowed: []string{"command", "stop_signal", "user", "group", "limits", "umask"}},
	DriverDocker:  {required: []string{"container", "upstream"}, allowed: []string{"container", "stop_signal"}},
	DriverSwarm:   {required: []string{"service", "upstream"}, allowed: []string{"service", "replicas"}},
	DriverCommand: {required: []string{"start", "stop", "upstream"}, allowed: []string{"start", "stop", "check"}},
}

// driverSpecific are the keys that only some drivers accept.
var driverSpecific = []string{"command", "container", "service", "replicas", "start", "stop", "check", "stop_signal",
	"user", "group", "limits", "umask"}

// mismatchHints say, for a key under a driver that does not use it, what
// does its job there.
var mismatchHints = map[string]map[string]string{
	"stop_signal": {
		DriverSwarm:   "tasks stop with the service's own stop signal (docker service update --stop-signal)",
		DriverCommand: "the stop command says how the app stops",
	},
	// The keys that bound what an exec app's program may do: under another
	// driver nothing would apply them, and the app would run with more
	// rights than its file says.
	"user": runAsHints, "group": runAsHints, "limits": runAsHints, "umask": runAsHints,
}

// runAsHints say, per driver other than exec, what decides the rights its
// app runs with.
var runAsHints = map[string]string{
	DriverDocker:  "the container runs as its image says (docker create --user, --ulimit)",
	DriverSwarm:   "the service's tasks run as it says (docker service create --user, --ulimit)",
	DriverCommand: "the start, stop and check commands run as the daemon's user; say the user in what they start (systemd's User=, pm2's --uid)",
}

// driverNames lists the drivers for messages, default first.
var driverNames = []string{DriverExec, DriverDocker, DriverSwarm, DriverCommand}

// driverOf reads the driver key (default exec). An invalid value is
// reported and exec assumed, so that the other keys are still checked.
func (d *decoder) driverOf(raw map[string]any) string {
	v, ok := raw["driver"]
	if !ok || v == nil {
		return DriverExec
	}
	want := "one of " + strings.Join(driverNames, ", ")
	str, ok := d.str("driver", v, want)
	if !ok {
		return DriverExec
	}
	if _, known := driverKeys[str]; !known {
		d.errorf("driver", "expected %s, got %s", want, Quote(str))
		return DriverExec
	}
	return str
}

// requiredKeys are the keys the file must hold for driver.
func requiredKeys(driver string) []string {
	return append([]string{"listen"}, driverKeys[driver].required...)
}

// driverMismatch reports driver-specific keys that driver does not use.
func (d *decoder) driverMismatch(driver string, raw map[string]any) {
	allowed := driverKeys[driver].allowed
	for _, key := range driverSpecific {
		if _, present := raw[key]; !present || slices.Contains(allowed, key) {
			continue
		}
		var users []string
		for _, name := range driverNames {
			if slices.Contains(driverKeys[name].allowed, key) {
				users = append(users, "driver: "+name)
			}
		}
		hint := ""
		if h := mismatchHints[key][driver]; h != "" {
			hint = ": " + h
		}
		d.errorf(key, "not used by driver: %s (only by %s)%s", driver, strings.Join(users, ", "), hint)
	}
}

// driverField decodes one driver-specific key into s.
func (d *decoder) driverField(s *Spec, key string, v any) {
	switch key {
	case "driver":
		// Read up front by driverOf.
	case "container":
		s.Containers, _ = d.stringList(key, v, "a container name", d.containerName)
	case "service":
		s.Service, _ = d.str(key, v, "a service name")
		if s.Service != "" {
			d.containerName(key, s.Service)
		} else if _, ok := v.(string); ok {
			d.errorf(key, "expected a service name, got an empty string")
		}
	case "replicas":
		s.Replicas, _ = d.integer(key, v, 1, 1000)
	case "start":
		s.StartCommand, _ = d.argv(key, v)
	case "stop":
		s.StopCommand, _ = d.argv(key, v)
	case "check":
		s.CheckCommand, _ = d.argv(key, v)
	}
}

// containerName accepts a Docker container or service name or id: the
// engine's rule is [a-zA-Z0-9][a-zA-Z0-9_.-]*. Checking it here turns a
// typo into a file error rather than a failed wake, and keeps names safe
// to put in a URL path.
func (d *decoder) containerName(field, name string) bool {
	ok := name != ""
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || (r != '_' && r != '.' && r != '-')) {
			ok = false
			break
		}
	}
	if !ok {
		d.errorf(field, "expected a Docker name (letters, digits, _ . -, starting with a letter or digit), got %s", Quote(name))
	}
	return ok
}

// missingMessage says why a required key is needed.
func missingMessage(driver, key string) string {
	switch {
	case key == "upstream" && driver != DriverExec:
		return "required key is missing (with driver: " + driver + ", DynaPM does not choose the port: say where the app listens)"
	case key == "listen" || driver == DriverExec:
		return "required key is missing"
	}
	return "required key is missing (with driver: " + driver + ")"
}
