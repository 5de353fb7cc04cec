package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dynapm/dynapm/internal/httpcap"
)

// SocketName is the admin socket's file name inside the state directory.
const SocketName = "dynapm.sock"

// Config is what Serve needs.
type Config struct {
	// StateDir holds the socket (StateDir/dynapm.sock) and the lock file.
	// It must exist and not be writable by group or others.
	StateDir string
	// LogDir holds the app logs, NAME.log (normally StateDir/logs).
	LogDir     string
	Controller Controller
	Logger     *slog.Logger
	// FollowInterval is how often a followed log is polled for growth;
	// 250ms when zero.
	FollowInterval time.Duration
	// Limits bound the API's connections (internal/httpcap); a followed
	// log is a request in progress, not an idle connection.
	Limits httpcap.Limits
}

// Server is a running admin API.
type Server struct {
	cfg    Config
	socket string
	lock   *os.File
	http   *http.Server
	cancel context.CancelFunc
	done   chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// SocketPath is where the admin socket of the state directory dir is.
func SocketPath(stateDir string) string {
	return filepath.Join(stateDir, SocketName)
}

// Serve checks the state directory, takes its lock, binds the admin socket
// (mode 0600) and serves the API on it until Shutdown.
func Serve(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FollowInterval <= 0 {
		cfg.FollowInterval = 250 * time.Millisecond
	}
	if err := CheckSocketPath(SocketPath(cfg.StateDir)); err != nil {
		return nil, err
	}
	if err := CheckPrivateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	lock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, socket: SocketPath(cfg.StateDir), lock: lock, done: make(chan struct{})}
	ln, err := s.listen()
	if err != nil {
		lock.Close()
		return nil, err
	}
	// Handlers that wait (start, logs -f) watch this context, so that
	// Shutdown is never held up by a client that follows a log forever.
	base, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.http = &http.Server{
		Handler:     s.routes(),
		BaseContext: func(net.Listener) context.Context { return base },
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	go s.serve(cfg.Limits.Apply(s.http, ln))
	cfg.Logger.Info("admin API listening", "socket", s.socket)
	return s, nil
}

// listen binds the socket, replacing a stale one, and makes it private.
func (s *Server) listen() (net.Listener, error) {
	if err := clearStaleSocket(s.socket); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening on admin socket: %w", err)
	}
	if err := os.Chmod(s.socket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("making admin socket private: %w", err)
	}
	return newOwnerListener(ln), nil
}

// serve runs the HTTP server until Shutdown.
func (s *Server) serve(ln net.Listener) {
	defer close(s.done)
	if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.cfg.Logger.Error("admin API stopped", "err", err)
	}
}

// Socket is the path of the socket the server listens on.
func (s *Server) Socket() string { return s.socket }

// Shutdown stops accepting, ends waiting requests (log follows, starts in
// progress), waits for handlers until ctx ends, then removes the socket and
// releases the state directory lock.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.cancel()
		err := s.http.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, s.http.Close())
		}
		<-s.done
		// The listener removes the socket file when it closes.
		s.closeErr = errors.Join(err, s.lock.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("shutting down admin API: %w", s.closeErr)
		}
	})
	return s.closeErr
}
