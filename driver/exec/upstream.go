package execdriver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dynapm/dynapm/lifecycle"
)

// upstreamCheckTimeout bounds the connect that checks a fixed upstream is
// free: on this machine it is answered or refused at once; the bound is
// for an upstream on another host that drops the SYN.
const upstreamCheckTimeout = time.Second

// checkUpstreamFree fails if something already accepts connections on
// upstream, the fixed address of an app that is about to be started. The
// program has not run yet, so whatever answers is not it: a process left
// by a daemon whose record was lost, a service started by hand, another
// app's program. Without this check the readiness probe would pass against
// that listener at once and the app's traffic would go to the wrong
// process. Only on that error is the holder looked for, in /proc.
func checkUpstreamFree(ctx context.Context, upstream string) error {
	d := net.Dialer{Timeout: upstreamCheckTimeout, KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", upstream)
	if err != nil {
		return nil // refused (or unreachable): the program may listen there
	}
	c.Close()
	holder := "a process DynaPM cannot see (another user's, or one on another host)"
	if ap, err := netip.ParseAddrPort(upstream); err == nil {
		if pid, cmd, ok := FindListener(ap); ok {
			holder = fmt.Sprintf("pid %d (%s)", pid, cmd)
		}
	}
	return fmt.Errorf("%w: %s is held by %s, not by the app's program, which has not started yet; stop that process, or give the app another upstream",
		lifecycle.ErrUpstreamInUse, upstream, holder)
}

// FindListener returns the process holding a listening TCP socket that
// takes connections to ap (to any address when ap is the unspecified
// one), and its command line, from /proc/net/tcp{,6}
// and the /proc/PID/fd links. ok is false when none is found (the socket
// is another user's, whose descriptors cannot be read, say).
func FindListener(ap netip.AddrPort) (pid int, cmd string, ok bool) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, ino := range listeningInodes(table, ap) {
			inodes["socket:["+ino+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return 0, "", false
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, "", false
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours to look at
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && inodes[link] {
				return pid, commandLine(pid), true
			}
		}
	}
	return 0, "", false
}

// tcpListen is the st column of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// listeningInodes returns the inodes of the listening sockets in the
// /proc/net/tcp-style table at path that take connections to ap: bound to
// its port and to its address or to the wildcard.
func listeningInodes(path string, ap netip.AddrPort) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var inodes []string
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != tcpListen {
			continue
		}
		local, ok := parseProcAddr(fields[1])
		if !ok || local.Port() != ap.Port() {
			continue
		}
		// A socket on every address holds the port for each, and one
		// on any address holds it against a bind to every address.
		if a := local.Addr().Unmap(); a == ap.Addr().Unmap() || a.IsUnspecified() || ap.Addr().IsUnspecified() {
			inodes = append(inodes, fields[9])
		}
	}
	return inodes
}

// parseProcAddr parses an address of /proc/net/tcp{,6}: the IP as 32-bit
// words in hex, each in the kernel's byte order, then ":" and the port in
// hex.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr, uint16(port)), true
}

// commandLine returns pid's command line, arguments joined by spaces and
// cut to a readable length, or "command unknown".
func commandLine(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	b = bytes.TrimRight(b, "\x00")
	if err != nil || len(b) == 0 {
		return "command unknown"
	}
	s := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
	const maxLen = 200
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return s
}
