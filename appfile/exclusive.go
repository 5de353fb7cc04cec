package appfile

// exclusive decodes the exclusive group an app belongs to: at most one app
// of a group runs at a time.
func (d *decoder) exclusive(s *Spec, key string, v any) {
	str, ok := d.str(key, v, "a group name")
	if !ok {
		return
	}
	if !ValidName(str) {
		d.errorf(key, "expected a group name matching %s, got %s", nameRule, Quote(str))
		return
	}
	s.Exclusive = str
}

// exclusiveChecks refuses an always app in a group: it is never stopped,
// so no other app of its group could run.
func (d *decoder) exclusiveChecks(s *Spec) {
	if s.Exclusive != "" && s.Mode == Always {
		d.errorf("exclusive", "mode always is never stopped, so no other app of group %s could run: use mode persistent or on-demand", Quote(s.Exclusive))
	}
}
