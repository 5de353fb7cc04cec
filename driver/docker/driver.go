// Package dockerdriver runs apps as Docker containers (driver: docker) and
// Docker Swarm services (driver: swarm), through the Docker Engine API.
//
// The engine is reached over its Unix socket, or the address DOCKER_HOST
// gives (unix:///path or tcp://host:port without TLS), with a small typed
// client of our own (client.go, api.go) rather than the official module,
// whose dependency tree is far larger than the dozen calls made here.
//
// A container app starts existing containers in order and stops them in
// reverse; DynaPM never creates or removes them. While an app is up, the
// engine's events tell when one of its containers dies, so that an app
// stopped by someone else (docker stop) is known stopped at once and the
// next connection starts it again; while it is stopped, they tell when
// someone starts its containers, and the app is adopted (outside.go). A Swarm app scales an existing
// replicated service between 0 and replicas.
package dockerdriver

import (
	"log/slog"
	"time"
)

// Config holds a driver's settings. Zero values take the defaults.
type Config struct {
	// Host is the engine's address in DOCKER_HOST form; "" means
	// $DOCKER_HOST, or DefaultHost when that is unset.
	Host string
	// Logger receives the driver's log; nil means slog.Default().
	Logger *slog.Logger
	// ReconnectDelay is the wait before subscribing again to the engine's
	// events after the stream broke (default 1s).
	ReconnectDelay time.Duration
	// PollInterval is how often a stopping Swarm service's tasks are
	// looked at (default 100ms).
	PollInterval time.Duration
}

func (cfg *Config) defaults() {
	if cfg.Host == "" {
		cfg.Host = hostFromEnv()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReconnectDelay <= 0 {
		cfg.ReconnectDelay = time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
}

// stopCallGrace is added to a stop's timeout for the API call itself: the
// engine answers a stop only once the container is gone.
const stopCallGrace = 30 * time.Second

// timeoutSeconds rounds a stop timeout up to the whole seconds the engine
// takes, at least 1.
func timeoutSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// Close ends the watch of container starts and releases the driver's idle
// connections to the engine. Processes started by the driver stay usable
// (a call opens a new connection).
func (d *ContainerDriver) Close() error {
	d.mu.Lock()
	d.closed = true
	cancel := d.watchCancel
	d.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	d.watchWG.Wait()
	d.c.http.CloseIdleConnections()
	return nil
}

// Close releases the driver's idle connections to the engine.
func (d *SwarmDriver) Close() error {
	d.c.http.CloseIdleConnections()
	return nil
}
