package appfile

import "fmt"

// FieldError is one problem in one app file. Its message names the file, the
// field and what was expected, so that a user can fix it without reading code.
type FieldError struct {
	File  string // path of the app file as given to Load
	Field string // dotted key, e.g. "ready.http" or "wake[0].cron"; "" for the whole file
	Msg   string // what was expected and what was found
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Msg)
}
