package settings

import "github.com/dynapm/dynapm/appfile"

// ParseBytes parses a size such as "512MiB", "4GiB" or "1048576" (bytes).
// App files take sizes too (memory_max), so the parser lives in appfile;
// see appfile.ParseBytes for the units.
func ParseBytes(s string) (int64, error) { return appfile.ParseBytes(s) }
