package main

import (
	"runtime"
	"testing"
)

func TestEventLoopsOnePerCPUAndOnePSpare(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	noEnv := func(k string) string {
		if k != "GOMAXPROCS" {
			t.Errorf("eventLoops read %q", k)
		}
		return ""
	}
	want := min(before, autoEventLoops)
	if got := eventLoops(noEnv, 0); got != want {
		t.Errorf("event_loops 0 on %d Ps: %d loops, want %d", before, got, want)
	}
	if got := runtime.GOMAXPROCS(0); got != before+1 {
		t.Fatalf("without GOMAXPROCS: %d Ps, want %d", got, before+1)
	}
}

func TestEventLoopsAsConfigured(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	if got := eventLoops(func(string) string { return "" }, 3); got != 3 {
		t.Errorf("event_loops 3: %d loops", got)
	}
	if got := runtime.GOMAXPROCS(0); got != before+1 {
		t.Fatalf("3 loops without GOMAXPROCS: %d Ps, want %d", got, before+1)
	}
}

func TestEventLoopsLeaveAUsersGOMAXPROCSAlone(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	if got := eventLoops(func(string) string { return "3" }, 2); got != 2 {
		t.Errorf("event_loops 2: %d loops", got)
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("with GOMAXPROCS set by the user: %d Ps, want %d (unchanged)", got, before)
	}
}
