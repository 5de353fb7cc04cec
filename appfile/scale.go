package appfile

// DefaultTargetConnections is scale.target_connections when the file leaves
// it out.
const DefaultTargetConnections = 50

// scaleKeys are the keys of the scale mapping.
var scaleKeys = []string{"max", "min", "target_connections"}

// Scale asks for several instances of one app behind its listen addresses.
// The zero value (no scale key) means one instance, as for any app.
type Scale struct {
	// Max is the most instances running at once (>= 1; 0 means 1).
	Max int
	// Min is how many instances are kept up even when idle (0..Max). An
	// on-demand app with Min 0 stops its last instance when idle, as
	// usual; persistent and always apps keep at least one.
	Min int
	// TargetConnections is the open connections per instance before
	// another is started (>= 1).
	TargetConnections int
}

// Instances returns the most instances the app may run: 1 without scale.
func (s Scale) Instances() int { return max(s.Max, 1) }

// scale decodes the scale mapping. max is required: a scale block without
// it would say nothing.
func (d *decoder) scale(s *Spec, key string, v any) {
	m, ok := d.mapping(key, v, scaleKeys)
	if !ok {
		return
	}
	sc := Scale{TargetConnections: DefaultTargetConnections}
	if mv, present := m["max"]; !present || mv == nil {
		d.errorf(join(key, "max"), "required key is missing (the most instances at once, 1 or more)")
	} else if n, ok := d.integer(join(key, "max"), mv, 1, 1024); ok {
		sc.Max = n
	}
	if mv, present := m["min"]; present && mv != nil {
		if n, ok := d.integer(join(key, "min"), mv, 0, 1024); ok {
			sc.Min = n
			if sc.Max > 0 && n > sc.Max {
				d.errorf(join(key, "min"), "expected at most max (%d), got %d", sc.Max, n)
			}
		}
	}
	if mv, present := m["target_connections"]; present && mv != nil {
		sc.TargetConnections, _ = d.integer(join(key, "target_connections"), mv, 1, 1<<20)
	}
	s.Scale = sc
}

// scaleChecks refuses a fixed upstream on a scaled app: each instance needs
// a port of its own, which DynaPM picks and passes as $PORT. Only the exec
// driver runs several copies of a program: a container, a service or a
// pm2 app is one thing that DynaPM starts and stops, not copies.
func (d *decoder) scaleChecks(s *Spec) {
	if s.Scale.Max > 1 && s.Driver != "" && s.Driver != DriverExec {
		d.errorf("scale", "driver %s runs one instance: scale needs driver exec (swarm has replicas)", s.Driver)
		return
	}
	if s.Scale.Max > 1 && s.Upstream != "" {
		d.errorf("upstream", "an app with scale.max %d runs several instances, each on a port DynaPM picks and passes as $PORT: leave upstream out", s.Scale.Max)
	}
}
