package lifecycle

import (
	"testing"
	"time"
)

func TestBackoffDelayDoublesUpToCap(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for n, w := range want {
		if got := backoffDelay(n, lo, hi); got != w {
			t.Errorf("backoffDelay(%d) = %v, want %v", n, got, w)
		}
	}
	// No overflow after very many failures.
	if got := backoffDelay(1000, lo, hi); got != hi {
		t.Errorf("backoffDelay(1000) = %v, want %v", got, hi)
	}
}
