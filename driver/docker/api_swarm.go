package dockerdriver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// serviceJSON is the part of GET /services/{id} the swarm driver reads. The
// spec is kept whole: an update sends the full spec back, and fields this
// client does not know must survive it.
type serviceJSON struct {
	ID      string
	Version struct{ Index uint64 }
	Spec    json.RawMessage
}

// serviceMode reads the replicated mode's replica count from a spec;
// ok is false for a global service.
func serviceMode(spec json.RawMessage) (replicas uint64, ok bool, err error) {
	var s struct {
		Mode struct {
			Replicated *struct{ Replicas *uint64 }
		}
	}
	if err := json.Unmarshal(spec, &s); err != nil {
		return 0, false, fmt.Errorf("decoding service spec: %w", err)
	}
	if s.Mode.Replicated == nil {
		return 0, false, nil
	}
	if s.Mode.Replicated.Replicas != nil {
		replicas = *s.Mode.Replicated.Replicas
	}
	return replicas, true, nil
}

// withReplicas returns spec with Mode.Replicated.Replicas set to n, every
// other field as it was (numbers kept as written).
func withReplicas(spec json.RawMessage, n uint64) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decoding service spec: %w", err)
	}
	mode, _ := m["Mode"].(map[string]any)
	rep, _ := mode["Replicated"].(map[string]any)
	if rep == nil {
		return nil, errors.New("not in replicated mode")
	}
	rep["Replicas"] = n
	return json.Marshal(m)
}

func (c *client) inspectService(ctx context.Context, name string) (*serviceJSON, error) {
	var out serviceJSON
	if err := c.call(ctx, http.MethodGet, "/services/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// updateService sends spec as the new spec of service id at version.
func (c *client) updateService(ctx context.Context, id string, version uint64, spec json.RawMessage) error {
	q := url.Values{"version": {strconv.FormatUint(version, 10)}}
	return c.call(ctx, http.MethodPost, "/services/"+url.PathEscape(id)+"/update", q, spec, nil)
}

// taskJSON is the part of a task the swarm driver reads.
type taskJSON struct {
	DesiredState string
	Status       struct {
		State           string
		Err             string
		ContainerStatus struct{ ContainerID string }
	}
}

// serviceTasks lists the tasks of service id.
func (c *client) serviceTasks(ctx context.Context, id string) ([]taskJSON, error) {
	var out []taskJSON
	if err := c.call(ctx, http.MethodGet, "/tasks", filters(map[string][]string{"service": {id}}), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}
