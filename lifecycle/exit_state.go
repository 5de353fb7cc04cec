package lifecycle

import "sync"

// ExitState is the Done and Err half of a Process for a driver whose
// instance ends on an event it watches rather than on a wait for a child:
// embed it, call Finish when the instance ends. The zero value is ready to
// use; it must not be copied after first use.
type ExitState struct {
	mu       sync.Mutex
	done     chan struct{} // made at first use, closed by the first Finish
	finished bool
	err      error
}

// Done is closed once Finish has been called.
func (s *ExitState) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.doneLocked()
}

func (s *ExitState) doneLocked() chan struct{} {
	if s.done == nil {
		s.done = make(chan struct{})
	}
	return s.done
}

// Err is the error given to the first Finish (nil before it).
func (s *ExitState) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Finish records err and closes Done. Only the first call counts: an
// instance ends once, and a later cause (Stop after an outside stop, or the
// reverse) must not rewrite why.
func (s *ExitState) Finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	s.finished = true
	s.err = err
	close(s.doneLocked())
}
