package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"time"
)

// appName is the app file name rule (appfile): checking it here also keeps
// the logs endpoint inside the log directory.
var appName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/apps", s.listApps)
	mux.HandleFunc("GET /v1/apps/{name}", s.getApp)
	mux.HandleFunc("POST /v1/apps/{name}/start", s.action(Controller.Start, true))
	mux.HandleFunc("POST /v1/apps/{name}/stop", s.action(Controller.Stop, false))
	mux.HandleFunc("POST /v1/apps/{name}/restart", s.action(Controller.Restart, true))
	for _, verb := range overrideActions {
		mux.HandleFunc("POST /v1/apps/{name}/"+verb, s.override(verb))
	}
	mux.HandleFunc("GET /v1/apps/{name}/logs", s.logs)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// apps is the controller's report with the server's clock applied.
func (s *Server) apps() []App {
	apps := s.cfg.Controller.Apps()
	now := time.Now()
	for i := range apps {
		if !apps[i].StartedAt.IsZero() && apps[i].UptimeSeconds == 0 {
			apps[i].UptimeSeconds = now.Sub(apps[i].StartedAt).Round(time.Second).Seconds()
		}
		if apps[i].Listen == nil {
			apps[i].Listen = []string{}
		}
		if apps[i].Instances == nil {
			apps[i].Instances = []Instance{}
		}
		for j := range apps[i].Instances {
			in := &apps[i].Instances[j]
			if !in.StartedAt.IsZero() && in.UptimeSeconds == 0 {
				in.UptimeSeconds = now.Sub(in.StartedAt).Round(time.Second).Seconds()
			}
		}
	}
	return apps
}

func (s *Server) findApp(name string) (App, bool) {
	for _, a := range s.apps() {
		if a.Name == name {
			return a, true
		}
	}
	return App{}, false
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.apps())
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	a, ok := s.findApp(name)
	if !ok {
		writeUnknown(w, name)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// action serves start, stop and restart: it waits for the controller and
// answers with the app's status afterwards.
func (s *Server) action(do func(Controller, context.Context, string) error, withTail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !appName.MatchString(name) {
			writeUnknown(w, name)
			return
		}
		if err := do(s.cfg.Controller, r.Context(), name); err != nil {
			if errors.Is(err, ErrUnknownApp) {
				writeUnknown(w, name)
				return
			}
			s.cfg.Logger.Warn("admin request failed", "app", name, "path", r.URL.Path, "err", err)
			body := errorBody{Error: err.Error(), Code: "failed"}
			if withTail {
				body.LogTail = s.logTail(name)
			}
			writeJSON(w, http.StatusConflict, body)
			return
		}
		a, ok := s.findApp(name)
		if !ok {
			writeUnknown(w, name)
			return
		}
		writeJSON(w, http.StatusOK, a)
	}
}

// override serves pin (with ?for=DURATION), unpin, disable and enable as
// an action.
func (s *Server) override(verb string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o := OverrideRequest{Action: verb}
		if v := r.URL.Query().Get("for"); v != "" && verb == "pin" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				writeError(w, http.StatusBadRequest, "bad_request", "for: expected a duration greater than 0 such as 2h, got "+quote(v))
				return
			}
			o.For = d
		}
		s.action(func(c Controller, ctx context.Context, name string) error { return c.Override(ctx, name, o) }, verb == "pin")(w, r)
	}
}

func writeUnknown(w http.ResponseWriter, name string) {
	writeError(w, http.StatusNotFound, "unknown_app", "unknown app "+quote(name))
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}
