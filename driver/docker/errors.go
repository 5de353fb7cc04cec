package dockerdriver

import (
	"errors"
	"fmt"
)

// explain turns a client error about an app's object (kind "container" or
// "service", named name) into a message that says what to do. The caller
// names the app and what it was doing.
func explain(kind, name string, err error) error {
	switch {
	case errors.Is(err, errUnreachable):
		return fmt.Errorf("%w; is dockerd running? is DOCKER_HOST right?", err)
	case errors.Is(err, errPermission):
		return fmt.Errorf("%w; add the user DynaPM runs as to the docker group (or run it as root)", err)
	case errors.Is(err, errStopSignal):
		return fmt.Errorf("%w; remove stop_signal from the app file and create the containers with it instead (docker create --stop-signal ...), or upgrade Docker", err)
	case errors.Is(err, errNotManager):
		return fmt.Errorf("%s %q: %w (%w); make it one (docker swarm init, or join this node to the swarm as a manager), or point DOCKER_HOST at a manager", kind, name, errNotManager, err)
	case errors.Is(err, errNotFound):
		hint := "create it first (docker create --name " + name + " ...)"
		if kind == "service" {
			hint = "create it first (docker service create --name " + name + " --replicas 0 ...)"
		}
		return fmt.Errorf("no %s named %q on the Docker Engine: %s, or fix %s: in the app file: %w", kind, name, hint, kind, err)
	}
	return fmt.Errorf("%s %q: %w", kind, name, err)
}
