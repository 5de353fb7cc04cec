package dockerdriver

import (
	"errors"
	"fmt"
)

// explain turns a client error about app's object (kind "container" or
// "service", named name) into a message that says what to do.
func explain(verb, app, kind, name string, err error) error {
	switch {
	case errors.Is(err, errUnreachable):
		return fmt.Errorf("%s app %q: %w; is dockerd running? is DOCKER_HOST right?", verb, app, err)
	case errors.Is(err, errPermission):
		return fmt.Errorf("%s app %q: %w; add the user DynaPM runs as to the docker group (or run it as root)", verb, app, err)
	case errors.Is(err, errStopSignal):
		return fmt.Errorf("%s app %q: %w; remove stop_signal from the app file and create the containers with it instead (docker create --stop-signal ...), or upgrade Docker", verb, app, err)
	case errors.Is(err, errNotManager):
		return fmt.Errorf("%s app %q: %s %q: %w (%w); make it one (docker swarm init, or join this node to the swarm as a manager), or point DOCKER_HOST at a manager", verb, app, kind, name, errNotManager, err)
	case errors.Is(err, errNotFound):
		hint := "create it first (docker create --name " + name + " ...)"
		if kind == "service" {
			hint = "create it first (docker service create --name " + name + " --replicas 0 ...)"
		}
		return fmt.Errorf("%s app %q: no %s named %q on the Docker Engine: %s, or fix %s: in the app file: %w", verb, app, kind, name, hint, kind, err)
	}
	return fmt.Errorf("%s app %q: %s %q: %w", verb, app, kind, name, err)
}
