package dockerdriver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
)

// DefaultHost is the engine's address when DOCKER_HOST is unset.
const DefaultHost = "unix:///var/run/docker.sock"

// Errors of the engine client; the drivers turn them into messages that
// name the app and what to do.
var (
	// errUnreachable: nothing answers at the engine's address.
	errUnreachable = errors.New("cannot reach the Docker Engine")
	// errPermission: the socket exists but the daemon may not use it.
	errPermission = errors.New("permission denied on the Docker socket")
	// errNotFound: the engine answered 404 (no such container or service).
	errNotFound = errors.New("not found")
	// errNotManager: the engine answered a Swarm call with 503, not being
	// a swarm manager (in no swarm, or a worker).
	errNotManager = errors.New("the Docker Engine is not a swarm manager")
)

// apiError is a non-2xx answer of the engine.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("Docker Engine: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

func (e *apiError) Is(target error) bool {
	switch target {
	case errNotFound:
		return e.Status == http.StatusNotFound
	case errNotManager:
		return e.Status == http.StatusServiceUnavailable && strings.Contains(e.Message, "not a swarm manager")
	}
	return false
}

// client is a small typed client of the Docker Engine API: only the calls
// the drivers make, over a Unix socket or plain TCP. The official module
// (github.com/docker/docker/client) would bring a large dependency tree
// for a dozen JSON calls.
type client struct {
	host    string // as configured, for messages
	network string // "unix" or "tcp"
	address string // socket path or host:port
	http    *http.Client

	err error // a host that cannot be used, reported at each call

	mu      sync.Mutex
	version string // negotiated API version, "" until the first answer
}

// newClient returns a client for host, a DOCKER_HOST value (unix:///path or
// tcp://host:port; TLS is not supported). A host that cannot be used is
// reported by every call rather than here: a daemon whose apps use no
// container must start whatever DOCKER_HOST says.
func newClient(host string) *client {
	if host == "" {
		host = DefaultHost
	}
	c := &client{host: host}
	u, err := url.Parse(host)
	switch {
	case err != nil:
		c.err = fmt.Errorf("%w: DOCKER_HOST %q: %v", errUnreachable, host, err)
	case u.Scheme == "unix" && u.Path != "":
		c.network, c.address = "unix", u.Path
	case (u.Scheme == "tcp" || u.Scheme == "http") && u.Host != "":
		c.network, c.address = "tcp", u.Host
	default:
		c.err = fmt.Errorf("%w: DOCKER_HOST %q: expected unix:///path/to/docker.sock or tcp://host:port (without TLS)", errUnreachable, host)
	}
	dialer := &net.Dialer{}
	c.http = &http.Client{Transport: &http.Transport{
		Proxy: nil, // the engine is local: never via $HTTP_PROXY
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, c.network, c.address)
		},
		MaxIdleConnsPerHost: 4,
	}}
	return c
}

// hostFromEnv is DOCKER_HOST, or DefaultHost.
func hostFromEnv() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return DefaultHost
}

// classify turns a transport error into errUnreachable or errPermission.
func (c *client) classify(err error) error {
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%w %s: %v", errPermission, c.address, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w at %s: %v", errUnreachable, c.host, err)
}

// apiVersion asks the engine which API version it speaks (GET /_ping,
// header API-Version) once, and uses that: the calls made here exist, with
// the same fields, in every version since 1.25, and an engine refuses a
// version newer than its own or older than its minimum.
func (c *client) apiVersion(ctx context.Context) (string, error) {
	if c.err != nil {
		return "", c.err
	}
	c.mu.Lock()
	v := c.version
	c.mu.Unlock()
	if v != "" {
		return v, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", c.classify(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	v = resp.Header.Get("API-Version")
	if v == "" {
		return "", fmt.Errorf("%w at %s: /_ping answered %s without an API-Version header", errUnreachable, c.host, resp.Status)
	}
	c.mu.Lock()
	c.version = v
	c.mu.Unlock()
	return v, nil
}

// do sends one request to path (with its query) and returns the response
// once the status is 2xx or 304; other statuses become *apiError.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	v, err := c.apiVersion(ctx)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := "http://docker/v" + v + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.classify(err)
	}
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	defer resp.Body.Close()
	var msg struct {
		Message string `json:"message"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &msg) != nil || msg.Message == "" {
		msg.Message = strings.TrimSpace(string(b))
	}
	return nil, &apiError{Status: resp.StatusCode, Message: msg.Message}
}

// call sends a request and decodes a JSON answer into out (nil: discard).
func (c *client) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	resp, err := c.do(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNotModified || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding %s %s: %w", method, path, err)
	}
	return nil
}

// filters encodes the engine's filters query parameter.
func filters(f map[string][]string) url.Values {
	b, _ := json.Marshal(f)
	return url.Values{"filters": {string(b)}}
}
