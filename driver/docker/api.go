package dockerdriver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// containerJSON is the part of GET /containers/{id}/json the drivers read.
type containerJSON struct {
	ID    string `json:"Id"`
	Name  string
	State struct {
		Status  string
		Running bool
		Pid     int
		// Health is nil for a container without a healthcheck.
		Health *struct {
			Status string // starting, healthy, unhealthy
		}
	}
	NetworkSettings struct {
		// Ports maps "8080/tcp" to the host addresses it is published on.
		Ports map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string
		}
		Networks map[string]struct{ IPAddress string }
	}
}

func (c *client) inspectContainer(ctx context.Context, name string) (*containerJSON, error) {
	var out containerJSON
	if err := c.call(ctx, http.MethodGet, "/containers/"+url.PathEscape(name)+"/json", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// startContainer starts a container; one that runs already is left alone
// (the engine answers 304).
func (c *client) startContainer(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/start", nil, nil, nil)
}

// stopContainer stops a container: sig, or its own stop signal when sig
// is 0, then SIGKILL after timeoutSec. A stopped container is left alone
// (304). The engine takes sig from API version signalAPI on; the caller
// checks (an older engine ignores the parameter).
func (c *client) stopContainer(ctx context.Context, id string, sig syscall.Signal, timeoutSec int) error {
	q := url.Values{"t": {strconv.Itoa(timeoutSec)}}
	if sig != 0 {
		// A number: the engine parses numbers and names alike.
		q.Set("signal", strconv.Itoa(int(sig)))
	}
	return c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/stop", q, nil, nil)
}

// signalAPI is the first Engine API version whose container stop takes a
// signal (Docker 23).
const signalAPI = "1.42"

// apiAtLeast reports whether API version v ("1.41") is at least want.
func apiAtLeast(v, want string) bool {
	parse := func(s string) (int, int, bool) {
		a, b, ok := strings.Cut(s, ".")
		major, err1 := strconv.Atoi(a)
		minor, err2 := strconv.Atoi(b)
		return major, minor, ok && err1 == nil && err2 == nil
	}
	vMajor, vMinor, ok := parse(v)
	wMajor, wMinor, _ := parse(want)
	return ok && (vMajor > wMajor || vMajor == wMajor && vMinor >= wMinor)
}

// statsJSON is the memory part of GET /containers/{id}/stats.
type statsJSON struct {
	MemoryStats struct {
		Usage uint64            `json:"usage"`
		Stats map[string]uint64 `json:"stats"`
	} `json:"memory_stats"`
}

// containerMemory returns the memory a container uses the way `docker
// stats` counts it: the cgroup's usage less the inactive page cache
// (total_inactive_file on cgroup v1, inactive_file on v2), which the kernel
// reclaims first and which would make every file-reading container look big.
func (c *client) containerMemory(ctx context.Context, id string) (uint64, error) {
	var s statsJSON
	// one-shot (API 1.41+; older engines ignore it) answers from one
	// sample at once: without it the engine waits a second for a second
	// sample to compute CPU figures we do not read, and a memory check
	// would wait 1-2 s per container.
	q := url.Values{"stream": {"false"}, "one-shot": {"true"}}
	if err := c.call(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/stats", q, nil, &s); err != nil {
		return 0, err
	}
	used := s.MemoryStats.Usage
	inactive, ok := s.MemoryStats.Stats["total_inactive_file"]
	if !ok {
		inactive = s.MemoryStats.Stats["inactive_file"]
	}
	if inactive < used {
		used -= inactive
	}
	return used, nil
}

// event is one message of GET /events.
type event struct {
	Type   string
	Action string
	Actor  struct {
		ID         string
		Attributes map[string]string
	}
	TimeNano int64 `json:"timeNano"`
}

// events streams the engine's events matching f since the given time
// ("" for now) to fn until ctx ends or the stream breaks. It returns once
// the engine has accepted the subscription (ready is closed then), so that
// a caller can subscribe before acting and miss nothing.
func (c *client) events(ctx context.Context, f map[string][]string, since string, ready chan<- struct{}, fn func(event)) error {
	q := filters(f)
	if since != "" {
		q.Set("since", since)
	}
	resp, err := c.do(ctx, http.MethodGet, "/events", q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	close(ready)
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var e event
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading Docker events: %w", err)
		}
		fn(e)
	}
}

// sinceNano formats an event time for the since parameter.
func sinceNano(ns int64) string {
	return fmt.Sprintf("%d.%09d", ns/1e9, ns%1e9)
}
