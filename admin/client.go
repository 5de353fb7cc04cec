package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
)

// Client talks to a running daemon over its admin socket.
type Client struct {
	// Socket is the admin socket's path (see SocketPath).
	Socket string
	// NotRunningHint, when set, is a line added to ErrNotRunning errors:
	// how the caller chose Socket, and how to choose another.
	NotRunningHint string
}

// APIError is a non-2xx answer from the daemon.
type APIError struct {
	Status  int
	Code    string
	Message string
	// LogTail is the end of the app's log after a failed start.
	LogTail string
}

func (e *APIError) Error() string { return e.Message }

// Unwrap lets errors.Is(err, ErrUnknownApp) recognise a 404 for an app.
func (e *APIError) Unwrap() error {
	if e.Code == "unknown_app" {
		return ErrUnknownApp
	}
	return nil
}

func (c *Client) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.Socket)
		},
		DisableKeepAlives: true,
	}}
}

// do sends one request and returns the response when it is a 2xx one.
func (c *Client) do(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	u := "http://dynapm" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	if err := CheckSocketPath(c.Socket); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		hint := ""
		if c.NotRunningHint != "" {
			hint = "\n" + c.NotRunningHint
		}
		if errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%w (no socket at %s); start it with `dynapm run`%s", ErrNotRunning, c.Socket, hint)
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (nothing answers on %s); start it with `dynapm run`%s", ErrNotRunning, c.Socket, hint)
		}
		return nil, fmt.Errorf("talking to dynapm at %s: %w", c.Socket, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var body errorBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil || body.Error == "" {
		body.Error = resp.Status
	}
	return nil, &APIError{Status: resp.StatusCode, Code: body.Code, Message: body.Error, LogTail: body.LogTail}
}

func (c *Client) getJSON(ctx context.Context, method, path string, v any) error {
	return c.getJSONQuery(ctx, method, path, nil, v)
}

func (c *Client) getJSONQuery(ctx context.Context, method, path string, q url.Values, v any) error {
	resp, err := c.do(ctx, method, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("reading answer from dynapm: %w", err)
	}
	return nil
}

// Apps reports every configured app.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	var apps []App
	err := c.getJSON(ctx, http.MethodGet, "/v1/apps", &apps)
	return apps, err
}

// App reports one app.
func (c *Client) App(ctx context.Context, name string) (App, error) {
	var a App
	err := c.getJSON(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name), &a)
	return a, err
}

// Start starts the app and returns its status once it is ready, or why it
// could not start.
func (c *Client) Start(ctx context.Context, name string) (App, error) {
	return c.action(ctx, name, "start")
}

// Stop stops the app and returns its status once it has stopped.
func (c *Client) Stop(ctx context.Context, name string) (App, error) {
	return c.action(ctx, name, "stop")
}

// Restart stops the app if it runs, starts it again and returns its status
// once it is ready.
func (c *Client) Restart(ctx context.Context, name string) (App, error) {
	return c.action(ctx, name, "restart")
}

func (c *Client) action(ctx context.Context, name, verb string) (App, error) {
	return c.actionQuery(ctx, name, verb, nil)
}

func (c *Client) actionQuery(ctx context.Context, name, verb string, q url.Values) (App, error) {
	var a App
	err := c.getJSONQuery(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(name)+"/"+verb, q, &a)
	return a, err
}

// Override pins (for o.For, 0 until unpinned), unpins, disables or
// enables the app, and returns its status afterwards.
func (c *Client) Override(ctx context.Context, name string, o OverrideRequest) (App, error) {
	var q url.Values
	if o.For > 0 {
		q = url.Values{"for": {o.For.String()}}
	}
	return c.actionQuery(ctx, name, o.Action, q)
}

// Logs writes the last n lines of the app's log to w and, when follow is
// set, goes on writing what is appended until ctx ends (which is not an
// error) or the daemon goes away.
func (c *Client) Logs(ctx context.Context, name string, n int, follow bool, w io.Writer) error {
	q := url.Values{"n": {strconv.Itoa(n)}}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name)+"/logs", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading log from dynapm: %w", err)
	}
	return nil
}
