package main

import (
	"errors"
	"io"
	"log/slog"

	"github.com/dynapm/dynapm/appfile"
	cmddriver "github.com/dynapm/dynapm/driver/command"
	dockerdriver "github.com/dynapm/dynapm/driver/docker"
	"github.com/dynapm/dynapm/lifecycle"
)

// otherDrivers returns the drivers besides exec, by the name app files give
// in driver:. None of them does anything until an app uses it: the Docker
// drivers contact the engine at an app's first start.
func otherDrivers(log *slog.Logger) map[string]lifecycle.Driver {
	docker := dockerdriver.Config{Logger: log}
	return map[string]lifecycle.Driver{
		appfile.DriverCommand: cmddriver.New(cmddriver.Config{Logger: log}),
		appfile.DriverDocker:  dockerdriver.NewContainerDriver(docker),
		appfile.DriverSwarm:   dockerdriver.NewSwarmDriver(docker),
	}
}

// closeDrivers closes the drivers that hold resources, once no app runs.
func closeDrivers(drivers map[string]lifecycle.Driver) error {
	var errs []error
	for _, d := range drivers {
		if c, ok := d.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
