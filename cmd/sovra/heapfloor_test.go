package main

import (
	"os"
	"runtime"
	"runtime/metrics"
	"testing"
)

// TestHeapFloorRaisesTheCollectorsTarget: with the floor, the collector's
// target is at least twice the floor; an operator's GOGC or GOMEMLIMIT
// leaves no floor.
func TestHeapFloorRaisesTheCollectorsTarget(t *testing.T) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("the collector is tuned by the environment")
	}
	old := heapFloor
	t.Cleanup(func() { heapFloor = old })
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		heapFloor = nil
		raiseHeapFloor(func(k string) string {
			if k == env {
				return "200"
			}
			return ""
		})
		if heapFloor != nil {
			t.Fatalf("a floor under %s", env)
		}
	}
	raiseHeapFloor(func(string) string { return "" })
	if len(heapFloor) != heapFloorBytes {
		t.Fatalf("floor of %d bytes, want %d", len(heapFloor), heapFloorBytes)
	}
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	if goal := s[0].Value.Uint64(); goal < 2*heapFloorBytes {
		t.Fatalf("the collector's target is %d bytes, want at least %d", goal, 2*heapFloorBytes)
	}
}
