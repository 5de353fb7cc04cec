package lifecycle

import "time"

// Backoff policy: the n-th consecutive failure (n ≥ 1) of an app delays its
// next start by min·2^(n-1), capped at max. A failure is a start that does not
// reach ready (spawn error, exit before ready, start timeout) or a crash of a
// ready instance that had been ready for less than max. The count resets when
// an instance that reached ready ends after at least max of readiness, or is
// stopped by the Manager itself (idle, manual, reload...): such an app is not
// crash-looping. Wake-triggered starts count like any other, so a program
// that dies at every connection cannot be spawned at connection rate.
const (
	defaultBackoffMin = time.Second
	defaultBackoffMax = time.Minute
)

// backoffDelay returns the delay after the n-th consecutive failure.
func backoffDelay(n int, lo, hi time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	d := lo
	for i := 1; i < n; i++ {
		d *= 2
		if d >= hi || d <= 0 {
			return hi
		}
	}
	return min(d, hi)
}
