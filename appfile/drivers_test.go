package appfile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestParseDrivers covers the driver key and the keys of each driver.
func TestParseDrivers(t *testing.T) {
	const head = "listen: ':1'\n"
	good := []struct {
		name  string
		yaml  string
		check func(t *testing.T, s *Spec)
	}{
		{"exec by default", "command: x\n", func(t *testing.T, s *Spec) {
			if s.Driver != DriverExec {
				t.Errorf("Driver = %q, want exec", s.Driver)
			}
		}},
		{"docker one container", "driver: docker\ncontainer: web-1\nupstream: '127.0.0.1:2'\n", func(t *testing.T, s *Spec) {
			if s.Driver != DriverDocker || !slices.Equal(s.Containers, []string{"web-1"}) || len(s.Command) != 0 {
				t.Errorf("spec = %+v", s)
			}
		}},
		{"docker containers in order", "driver: docker\ncontainer: [db, cache, web.front]\nupstream: '127.0.0.1:2'\n", func(t *testing.T, s *Spec) {
			if !slices.Equal(s.Containers, []string{"db", "cache", "web.front"}) {
				t.Errorf("Containers = %q", s.Containers)
			}
		}},
		{"swarm default replicas", "driver: swarm\nservice: api\nupstream: '127.0.0.1:2'\n", func(t *testing.T, s *Spec) {
			if s.Service != "api" || s.Replicas != DefaultReplicas {
				t.Errorf("Service %q Replicas %d", s.Service, s.Replicas)
			}
		}},
		{"swarm replicas", "driver: swarm\nservice: api\nreplicas: 3\nupstream: '127.0.0.1:2'\n", func(t *testing.T, s *Spec) {
			if s.Replicas != 3 {
				t.Errorf("Replicas = %d", s.Replicas)
			}
		}},
		{"command", "driver: command\nstart: systemctl start x\nstop: [systemctl, stop, x]\ncheck: systemctl is-active x\nupstream: '127.0.0.1:2'\n", func(t *testing.T, s *Spec) {
			if !slices.Equal(s.StartCommand, []string{"/bin/sh", "-c", "systemctl start x"}) ||
				!slices.Equal(s.StopCommand, []string{"systemctl", "stop", "x"}) ||
				!slices.Equal(s.CheckCommand, []string{"/bin/sh", "-c", "systemctl is-active x"}) {
				t.Errorf("spec = %+v", s)
			}
		}},
		{"docker stop_signal", "driver: docker\ncontainer: web\nupstream: '127.0.0.1:2'\nstop_signal: SIGQUIT\n", func(t *testing.T, s *Spec) {
			if s.StopSignal != syscall.SIGQUIT {
				t.Errorf("StopSignal = %v, want SIGQUIT", s.StopSignal)
			}
		}},
		{"command without check", "driver: command\nstart: a\nstop: b\nupstream: '127.0.0.1:2'\n", func(t *testing.T, s *Spec) {
			if s.CheckCommand != nil {
				t.Errorf("CheckCommand = %q, want none", s.CheckCommand)
			}
		}},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "app.yaml")
			s, err := Parse(p, []byte(head+c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, s)
		})
	}
	bad := []struct {
		name, yaml, field, want string
	}{
		{"unknown driver", "driver: podman\ncommand: x\n", "driver", `expected one of exec, docker, swarm, command, got "podman"`},
		{"driver not a string", "driver: 3\ncommand: x\n", "driver", "got 3"},
		{"exec needs command", "driver: exec\n", "command", "required key is missing"},
		{"exec refuses container", "command: x\ncontainer: web\n", "container", "not used by driver: exec (only by driver: docker)"},
		{"exec refuses start", "command: x\nstart: y\n", "start", "only by driver: command"},
		{"docker needs container", "driver: docker\nupstream: '127.0.0.1:2'\n", "container", "required key is missing (with driver: docker)"},
		{"docker needs upstream", "driver: docker\ncontainer: web\n", "upstream", "DynaPM does not choose the port"},
		{"docker refuses command", "driver: docker\ncontainer: web\nupstream: '127.0.0.1:2'\ncommand: x\n", "command", "only by driver: exec"},
		{"docker bad name", "driver: docker\ncontainer: 'web/1'\nupstream: '127.0.0.1:2'\n", "container", `expected a Docker name`},
		{"docker bad name in list", "driver: docker\ncontainer: [web, '-x']\nupstream: '127.0.0.1:2'\n", "container[1]", `got "-x"`},
		{"docker duplicate", "driver: docker\ncontainer: [web, web]\nupstream: '127.0.0.1:2'\n", "container[1]", "listed twice"},
		{"docker empty list", "driver: docker\ncontainer: []\nupstream: '127.0.0.1:2'\n", "container", "empty list"},
		{"docker refuses replicas", "driver: docker\ncontainer: web\nupstream: '127.0.0.1:2'\nreplicas: 2\n", "replicas", "only by driver: swarm"},
		{"swarm needs service", "driver: swarm\nupstream: '127.0.0.1:2'\n", "service", "required key is missing"},
		{"swarm empty service", "driver: swarm\nservice: ''\nupstream: '127.0.0.1:2'\n", "service", "empty string"},
		{"swarm zero replicas", "driver: swarm\nservice: a\nreplicas: 0\nupstream: '127.0.0.1:2'\n", "replicas", "from 1 to 1000, got 0"},
		{"command needs start", "driver: command\nstop: x\nupstream: '127.0.0.1:2'\n", "start", "required key is missing"},
		{"command needs stop", "driver: command\nstart: x\nupstream: '127.0.0.1:2'\n", "stop", "required key is missing"},
		{"command needs upstream", "driver: command\nstart: x\nstop: y\n", "upstream", "does not choose the port"},
		{"command refuses user", "driver: command\nstart: a\nstop: b\nupstream: '127.0.0.1:2'\nuser: www\n", "user",
			"not used by driver: command (only by driver: exec): the start, stop and check commands run as the daemon's user"},
		{"docker refuses umask", "driver: docker\ncontainer: web\nupstream: '127.0.0.1:2'\numask: \"027\"\n", "umask",
			"not used by driver: docker (only by driver: exec): the container runs as its image says"},
		{"swarm refuses stop_signal", "driver: swarm\nservice: a\nupstream: '127.0.0.1:2'\nstop_signal: SIGINT\n", "stop_signal",
			"not used by driver: swarm (only by driver: exec, driver: docker): tasks stop with the service's own stop signal (docker service update --stop-signal)"},
		{"command refuses stop_signal", "driver: command\nstart: x\nstop: y\nupstream: '127.0.0.1:2'\nstop_signal: SIGTERM\n", "stop_signal",
			"not used by driver: command (only by driver: exec, driver: docker): the stop command says how the app stops"},
		{"command empty check", "driver: command\nstart: x\nstop: y\ncheck: ''\nupstream: '127.0.0.1:2'\n", "check", "empty string"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "app.yaml")
			_, err := Parse(p, []byte(head+c.yaml))
			requireFieldError(t, err, p, c.field, c.want)
		})
	}
}

// TestDriverKeysNeedRestart: changing how an app runs restarts it.
func TestDriverKeysNeedRestart(t *testing.T) {
	base := &Spec{Name: "a", Driver: DriverDocker, Containers: []string{"x"}}
	changes := map[string]func(s *Spec){
		"driver":     func(s *Spec) { s.Driver = DriverSwarm },
		"containers": func(s *Spec) { s.Containers = []string{"x", "y"} },
		"service":    func(s *Spec) { s.Service = "svc" },
		"replicas":   func(s *Spec) { s.Replicas = 2 },
		"start":      func(s *Spec) { s.StartCommand = []string{"a"} },
		"stop":       func(s *Spec) { s.StopCommand = []string{"a"} },
		"check":      func(s *Spec) { s.CheckCommand = []string{"a"} },
	}
	for name, change := range changes {
		s := *base
		s.Containers = slices.Clone(base.Containers)
		change(&s)
		if !s.NeedsRestart(base) || s.Equal(base) {
			t.Errorf("%s changed: NeedsRestart %v Equal %v, want true and false", name, s.NeedsRestart(base), s.Equal(base))
		}
	}
	same := *base
	if same.NeedsRestart(base) || !same.Equal(base) {
		t.Error("an identical copy needs a restart or is not equal")
	}
}

// TestReadmeDriverExamples parses every YAML example of README.md's Drivers
// section, so that the documentation cannot drift from the parser.
func TestReadmeDriverExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Drivers\n")
	if !ok {
		t.Fatal("README.md has no Drivers section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	drivers := map[string]bool{}
	for _, block := range strings.Split(section, "```yaml\n")[1:] {
		yaml, _, _ := strings.Cut(block, "```")
		s, err := Parse(filepath.Join(t.TempDir(), "example.yaml"), []byte(yaml))
		if err != nil {
			t.Errorf("README example does not parse: %v\n%s", err, yaml)
			continue
		}
		drivers[s.Driver] = true
	}
	for _, d := range []string{DriverDocker, DriverSwarm, DriverCommand} {
		if !drivers[d] {
			t.Errorf("README.md's Drivers section has no example of driver: %s", d)
		}
	}
}
