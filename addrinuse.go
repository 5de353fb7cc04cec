package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	execdriver "github.com/dynapm/dynapm/driver/exec"
)

// listenError says why listen address addr could not be listened on, for
// a FieldError whose field (listen[i]) and file already say where: the
// address and the cause, and who holds the address when it is in use.
func listenError(addr string, err error) string {
	if errors.Is(err, syscall.EADDRINUSE) {
		return addrInUse(addr, false)
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s: %v", addr, se)
	}
	return err.Error()
}

// addrInUse words that addr is taken, naming the process that listens on
// it when /proc tells (a process of another user may not be found). now:
// found so by check, rather than by the daemon's bind.
func addrInUse(addr string, now bool) string {
	holder := "another process"
	if ap, ok := listenAddrPort(addr); ok {
		if pid, cmd, ok := execdriver.FindListener(ap); ok {
			holder = fmt.Sprintf("pid %d (%s)", pid, cmd)
		}
	}
	if now {
		return fmt.Sprintf("%s is in use now by %s, so the daemon could not serve the app; stop it, or give the app another listen address", addr, holder)
	}
	return fmt.Sprintf("%s is already in use by %s; stop it, or give the app another listen address", addr, holder)
}

// listenAddrPort parses a listen address with a literal IP or none
// (":8080", every address); a host name gives false.
func listenAddrPort(addr string) (netip.AddrPort, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, false
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
	return ap, err == nil
}
