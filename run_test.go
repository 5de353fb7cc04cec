package main

import (
	"runtime"
	"testing"
)

func TestProcsForLoopAddsOnePUnlessTheUserChose(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	procsForLoop(func(string) string { return "3" })
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("with GOMAXPROCS set by the user: %d Ps, want %d (unchanged)", got, before)
	}
	procsForLoop(func(k string) string {
		if k != "GOMAXPROCS" {
			t.Errorf("procsForLoop read %q", k)
		}
		return ""
	})
	if got := runtime.GOMAXPROCS(0); got != before+1 {
		t.Fatalf("without GOMAXPROCS: %d Ps, want %d", got, before+1)
	}
}
