package admin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Override is one app's pin or disable as kept in STATE/overrides.json, so
// that `dynapm pin` and `dynapm disable` survive a daemon restart.
type Override struct {
	App string `json:"app"`
	// Pinned keeps the app up; PinnedUntil ends the pin (omitted: until
	// `dynapm unpin`).
	Pinned      bool      `json:"pinned,omitempty"`
	PinnedUntil time.Time `json:"pinned_until,omitzero"`
	// Disabled keeps the app stopped until `dynapm enable`.
	Disabled bool `json:"disabled,omitempty"`
}

// overridesFile is the overrides' file name in the state directory.
const overridesFile = "overrides.json"

// maxOverridesSize bounds what LoadOverrides reads.
const maxOverridesSize = 16 << 20

// LoadOverrides reads STATE/overrides.json; a missing file is no
// overrides. The file must be a regular file: a symlink is not followed
// (the daemon, often root, would read where it points).
func LoadOverrides(stateDir string) ([]Override, error) {
	path := filepath.Join(stateDir, overridesFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("reading %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxOverridesSize))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var list []Override
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("reading %s: expected a JSON array of {app, pinned, pinned_until, disabled}: %w", path, err)
	}
	return list, nil
}

// SaveOverrides replaces STATE/overrides.json with list, atomically: a new
// file (created, never opened through a symlink) is written, synced and
// renamed over the old one, so a crash leaves the old or the new list,
// never half of one.
func SaveOverrides(stateDir string, list []Override) error {
	if list == nil {
		list = []Override{}
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(stateDir, "."+overridesFile+"."+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("saving overrides: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(stateDir, overridesFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("saving overrides: %w", err)
	}
	if d, err := os.Open(stateDir); err == nil {
		_ = d.Sync() // the rename itself
		d.Close()
	}
	return nil
}
