package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dynapm/dynapm/internal/httpcap"
)

// Server serves /metrics over TCP.
type Server struct {
	http *http.Server
	ln   net.Listener
	done chan struct{}
}

// Serve listens on addr (host:port) and serves m at /metrics until
// Shutdown. setting says where addr was configured ("setting `metrics` in
// /etc/dynapm.yaml"), so that an address that cannot be listened on points
// the operator at what to change; "" leaves it out.
// limits bound its connections (internal/httpcap).
func Serve(addr, setting string, m *Metrics, logger *slog.Logger, limits httpcap.Limits) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if setting != "" {
			return nil, fmt.Errorf("listening for metrics on %s (%s): %w", addr, setting, err)
		}
		return nil, fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}))
	s := &Server{http: &http.Server{Handler: mux, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}, done: make(chan struct{})}
	s.ln = limits.Apply(s.http, ln)
	go s.serve(logger)
	logger.Info("metrics listening", "addr", ln.Addr().String())
	return s, nil
}

func (s *Server) serve(logger *slog.Logger) {
	defer close(s.done)
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("metrics server stopped", "err", err)
	}
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the server, waiting for scrapes in progress until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	<-s.done
	if err != nil {
		return fmt.Errorf("shutting down metrics: %w", err)
	}
	return nil
}
