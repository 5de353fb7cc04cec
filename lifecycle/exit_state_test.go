package lifecycle

import (
	"errors"
	"testing"
)

func TestExitStateKeepsTheFirstCause(t *testing.T) {
	var s ExitState
	select {
	case <-s.Done():
		t.Fatal("Done closed before Finish")
	default:
	}
	first := errors.New("first")
	s.Finish(first)
	s.Finish(nil)
	select {
	case <-s.Done():
	default:
		t.Fatal("Done still open after Finish")
	}
	if err := s.Err(); err != first {
		t.Fatalf("Err = %v, want the first cause", err)
	}
}
