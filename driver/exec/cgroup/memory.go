package cgroup

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The memory.* files exist in a group only when its parent enabled the
// memory controller for it; their absence is ErrNoMemory.

// MemoryCurrent returns the memory the group's processes use, in bytes.
func (g *Group) MemoryCurrent() (uint64, error) {
	data, err := g.memRead("memory.current")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s/memory.current: %q is not a number", g.Path(), data)
	}
	return n, nil
}

// SetMemoryMax sets the group's memory.max: the kernel reclaims, then
// OOM-kills inside the group above it. Zero means no limit.
func (g *Group) SetMemoryMax(limit uint64) error {
	v := "max"
	if limit > 0 {
		v = strconv.FormatUint(limit, 10)
	}
	return g.memErr(g.write("memory.max", v))
}

// OOMKills counts the group's processes the OOM killer killed.
func (g *Group) OOMKills() (uint64, error) {
	n, err := g.keyed("memory.events", "oom_kill")
	return uint64(n), g.memErr(err)
}

func (g *Group) memRead(file string) ([]byte, error) {
	data, err := g.read(file)
	return data, g.memErr(err)
}

func (g *Group) memErr(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNoMemory, err)
	}
	return err
}
