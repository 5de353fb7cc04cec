// Command dynapm keeps many rarely used TCP services ready on one machine
// while only the ones in use cost CPU and memory. See README.md.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dynapm/dynapm/driver/exec/spawner"
)

const usage = `dynapm keeps rarely used TCP services ready, starting them on the first connection.

Usage:
  dynapm [run]  [-apps DIR] [-state DIR] [-config FILE]   run the daemon (the default)
  dynapm check  [-apps DIR] [-config FILE]                validate every app file; exit 1 on errors
  dynapm status [-json]                                   every app: state, pid, uptime, connections, RSS...
  dynapm start|stop|restart NAME                          start (waiting until ready), stop or restart an app
  dynapm logs NAME [-n N] [-f]                            the end of an app's log; -f follows it
  dynapm pin NAME [-for 2h] | unpin NAME                  keep an app up whatever its idle time (starting it)
  dynapm disable NAME | enable NAME                       stop an app and refuse its wakes, or allow them again
  dynapm version                                          the version and VCS revision (also -version)

The client commands find the daemon's admin socket (STATE/dynapm.sock)
through -state DIR or -config FILE (its state_dir), or else the
environment variable DYNAPM_STATE=DIR.

Run "dynapm COMMAND -h" for a command's flags.
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == spawner.HelperArg {
		// The daemon's helper process, not a command for users.
		os.Exit(spawner.Main())
	}
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs one subcommand and returns the process exit code.
func dispatch(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version") {
		cmd, args = "version", args[1:]
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") && cmd == "run" {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runCommand(args, stderr)
	case "check":
		return checkCommand(args, stdout, stderr)
	case "status":
		return statusCommand(args, stdout, stderr)
	case "start":
		return startCommand(args, stdout, stderr)
	case "stop":
		return stopCommand(args, stdout, stderr)
	case "restart":
		return restartCommand(args, stdout, stderr)
	case "logs":
		return logsCommand(args, stdout, stderr)
	case "pin":
		return pinCommand(args, stdout, stderr)
	case "unpin", "disable", "enable":
		return overrideCommand(cmd)(args, stdout, stderr)
	case "version":
		return versionCommand(stdout)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "dynapm: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
