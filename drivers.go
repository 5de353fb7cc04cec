package main

import (
	"log/slog"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/cmddriver"
	"github.com/dynapm/dynapm/lifecycle"
)

// otherDrivers returns the drivers besides exec, by the name app files give
// in driver:.
func otherDrivers(log *slog.Logger) map[string]lifecycle.Driver {
	return map[string]lifecycle.Driver{
		appfile.DriverCommand: cmddriver.New(cmddriver.Config{Logger: log}),
	}
}
