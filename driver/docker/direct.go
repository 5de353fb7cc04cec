package dockerdriver

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// directDialTimeout bounds one connect to a container's own address.
const directDialTimeout = time.Second

// listensInside reports whether the program in a container accepts
// connections on the container port published as hostPort, by connecting
// to the container's own address. A connect to the published port proves
// nothing: the engine's userland proxy (docker-proxy) accepts there as soon
// as the container runs, and closes the connection when the program does
// not listen yet. A container that does not publish hostPort (host
// networking, or the port is another container's) has nothing to check
// here: true.
func listensInside(ctx context.Context, info *containerJSON, hostPort int) (bool, error) {
	want := strconv.Itoa(hostPort)
	private := ""
	for port, bindings := range info.NetworkSettings.Ports {
		proto, ok := strings.CutSuffix(port, "/tcp")
		if !ok {
			continue
		}
		for _, b := range bindings {
			if b.HostPort == want {
				private = proto
			}
		}
	}
	if private == "" {
		return true, nil
	}
	var lastErr error
	for _, n := range info.NetworkSettings.Networks {
		if n.IPAddress == "" {
			continue
		}
		d := net.Dialer{Timeout: directDialTimeout, KeepAlive: -1}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(n.IPAddress, private))
		if err == nil {
			c.Close()
			return true, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		return true, nil // no address to try: trust the usual probe
	}
	return false, fmt.Errorf("container port %s/tcp: %w", private, lastErr)
}

// upstreamPort is the port of a host:port upstream, 0 if none.
func upstreamPort(upstream string) int {
	_, p, err := net.SplitHostPort(upstream)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
