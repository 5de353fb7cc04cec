package main

import (
	"testing"

	"go.uber.org/goleak"
)

// The UDP tests run the echo and the load's clients as goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
