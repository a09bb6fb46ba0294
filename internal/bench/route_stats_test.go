package bench

import (
	"math"
	"testing"
	"time"
)

func TestSummarizeRoute(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	samples := []RouteSample{
		{Node: "a", Queue: ms(10), HasQueue: true, TTFT: ms(50), Latency: ms(300), Route: "ttf", Attempts: 1, Conv: -1},
		{Node: "a", Queue: ms(30), HasQueue: true, TTFT: ms(70), Latency: ms(320), Route: "affinity", Attempts: 2, Conv: -1},
		{Node: "b", TTFT: ms(90), Latency: ms(340), Route: "ttf", Conv: -1},
		{Err: "status 503: busy", Conv: -1},
		{Err: "timed out", Conv: -1},
	}
	f := SummarizeRoute(samples)
	if f.Sent != 5 || f.OK != 3 || f.Errors != 2 || f.FirstError != "status 503: busy" {
		t.Fatalf("counts %+v", f)
	}
	if f.QueueKnown != 2 || f.Queue.Mean != ms(20) || f.Queue.P99 != ms(30) {
		t.Errorf("queue %+v over %d", f.Queue, f.QueueKnown)
	}
	if f.TTFT.Mean != ms(70) || f.TTFT.P99 != ms(90) || f.Latency.Max != ms(340) {
		t.Errorf("ttft %+v latency %+v", f.TTFT, f.Latency)
	}
	if f.Nodes["a"] != 2 || f.Nodes["b"] != 1 || f.Routes["ttf"] != 2 || f.Routes["affinity"] != 1 || f.Retried != 1 {
		t.Errorf("nodes %v routes %v retried %d", f.Nodes, f.Routes, f.Retried)
	}
}

func TestNodeLoads(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4"}
	// Capacities 2, 2, 8, 0.5 (slots x speed): shares 16%, 16%, 64%, 4%.
	capacity := map[string]float64{"n1": 2, "n2": 2, "n3": 8, "n4": 0.5}
	tests := []struct {
		name     string
		requests map[string]int
		load     []float64
		relative []float64
	}{
		{
			name:     "in proportion to capacity",
			requests: map[string]int{"n1": 160, "n2": 160, "n3": 640, "n4": 40},
			load:     []float64{1, 1, 1, 1}, relative: []float64{1, 1, 1, 1},
		},
		{
			name:     "round-robin",
			requests: map[string]int{"n1": 250, "n2": 250, "n3": 250, "n4": 250},
			// shares 25% against 16%, 16%, 64%, 4%
			load:     []float64{1.5625, 1.5625, 0.390625, 6.25},
			relative: []float64{1.5625, 1.5625, 0.390625, 6.25},
		},
		{
			name:     "one node idle",
			requests: map[string]int{"n1": 0, "n2": 200, "n3": 760, "n4": 40},
			load:     []float64{0, 1.25, 1.1875, 1},
			relative: []float64{0, 1.25, 1.1875, 1},
		},
		{
			name:     "nothing served",
			requests: map[string]int{},
			load:     []float64{0, 0, 0, 0}, relative: []float64{0, 0, 0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NodeLoads(nodes, tt.requests, capacity)
			for i, l := range got {
				if l.Node != nodes[i] || !closeTo(l.Load, tt.load[i]) || !closeTo(l.Relative, tt.relative[i]) {
					t.Errorf("%s: load %.4f relative %.4f, want %.4f %.4f", l.Node, l.Load, l.Relative, tt.load[i], tt.relative[i])
				}
			}
		})
	}
	got := NodeLoads(nodes, map[string]int{"n1": 1, "n2": 1, "n3": 6, "n4": 2}, capacity)
	if node, worst := MaxRelative(got); node != "n4" || worst <= 1.25 {
		t.Errorf("max relative %s %.2f, want n4 above 1.25", node, worst)
	}
	if got[3].Share != 0.2 || got[3].CapShare != 0.5/12.5 {
		t.Errorf("n4 share %v of capacity %v", got[3].Share, got[3].CapShare)
	}
}

func closeTo(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestAffinity(t *testing.T) {
	samples := []RouteSample{
		{Conv: 0, Turn: 0, Node: "a"},
		{Conv: 0, Turn: 1, Node: "a"}, // same
		{Conv: 0, Turn: 2, Node: "b"}, // moved
		{Conv: 0, Turn: 3, Node: "b"}, // same
		{Conv: 1, Turn: 0, Node: "c"},
		{Conv: 1, Turn: 1, Err: "timed out"}, // failed: not counted, nor the next
		{Conv: 2, Turn: 1, Node: "a"},        // no first turn on record
		{Conv: 3, Turn: 0, Node: ""},
		{Conv: 3, Turn: 1, Node: "a"}, // previous node unknown
		{Conv: -1, Turn: 1, Node: "a"},
	}
	followUps, same := Affinity(samples)
	if followUps != 3 || same != 2 {
		t.Errorf("affinity %d of %d, want 2 of 3", same, followUps)
	}
}

func TestRouteFormatting(t *testing.T) {
	tests := []struct {
		name string
		c    RouteCheck
		want string
	}{
		{"ratio within", NewRouteCheck("ttf mean TTFT at 80% / oracle's", 1.0712, 1.1, "x", false),
			"ttf mean TTFT at 80% / oracle's: 1.07x <= 1.10x  PASS"},
		{"ratio at the limit", NewRouteCheck("p99", 1.3, 1.3, "x", false), "p99: 1.30x <= 1.30x  PASS"},
		{"ratio over", NewRouteCheck("p99 / LC", 0.61, 0.5, "x", false), "p99 / LC: 0.61x <= 0.50x  FAIL"},
		{"share at least", NewRouteCheck("affinity", 85.5, 80, "%", true), "affinity: 85.5 % >= 80 %  PASS"},
		{"share short", NewRouteCheck("affinity", 79.9, 80, "%", true), "affinity: 79.9 % >= 80 %  FAIL"},
		{"count", NewRouteCheck("failed", 3, 0, "", false), "failed: 3 <= 0  FAIL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.String(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	for v, want := range map[float64]string{0: "-", 1: "1.00x", 0.456: "0.46x", 12.345: "12.35x"} {
		if got := FormatRatio(v); got != want {
			t.Errorf("FormatRatio(%v) = %q, want %q", v, got, want)
		}
	}
	if got := Ratio(3*time.Millisecond, 2*time.Millisecond); got != 1.5 {
		t.Errorf("Ratio = %v", got)
	}
}
