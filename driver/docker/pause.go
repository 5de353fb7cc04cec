package dockerdriver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/dynapm/dynapm/lifecycle"
)

var _ lifecycle.Freezer = (*containerProcess)(nil)

// Freeze pauses the app's containers, last started first (docker pause:
// the engine freezes each container's cgroup). A container paused already
// stays so.
func (p *containerProcess) Freeze(ctx context.Context) error {
	for i := len(p.ids) - 1; i >= 0; i-- {
		if err := p.driver.c.pauseContainer(ctx, p.ids[i], true); err != nil {
			return fmt.Errorf("pausing: %w", explain("container", p.names[p.ids[i]], err))
		}
	}
	return nil
}

// Thaw unpauses the app's containers, in start order. A container that
// is not paused is left as it is.
func (p *containerProcess) Thaw(ctx context.Context) error {
	var errs []error
	for _, id := range p.ids {
		if err := p.driver.c.pauseContainer(ctx, id, false); err != nil {
			errs = append(errs, fmt.Errorf("unpausing: %w", explain("container", p.names[id], err)))
		}
	}
	return errors.Join(errs...)
}

// pauseContainer pauses (or unpauses) a container. The engine's 409 for
// one paused already (or not paused) is no error.
func (c *client) pauseContainer(ctx context.Context, id string, pause bool) error {
	verb := "/unpause"
	if pause {
		verb = "/pause"
	}
	err := c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+verb, nil, nil, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict &&
		(strings.Contains(ae.Message, "already paused") || strings.Contains(ae.Message, "not paused")) {
		return nil
	}
	return err
}
