package bench

import (
	"testing"
	"time"
)

func TestMisroutes(t *testing.T) {
	ms := time.Millisecond
	service := map[string]time.Duration{"slow": 300 * ms, "fast": 100 * ms}
	slots := map[string]int{"slow": 1, "fast": 1}
	at := func(node string, start, lat time.Duration) RouteSample {
		return RouteSample{Node: node, Start: start, Latency: lat}
	}
	// The first request finds both idle and goes to the fast node; the
	// second comes while the fast node holds it: the fast node would
	// still finish it in 200 ms, the slow one takes 300 ms. The third
	// finds both idle and takes the slow one: 300 ms for 100.
	samples := []RouteSample{at("fast", 0, 100*ms), at("slow", 10*ms, 300*ms), at("slow", time.Second, 300*ms), {Node: "fast", Err: "failed"}}
	share, regret := Misroutes(samples, service, slots)
	if share != 2.0/3 || regret != 100*ms {
		t.Fatalf("misrouted %.3f, regret %s; want 2/3 and (100+200)/3 = 100 ms", share, regret)
	}
	if share, regret := Misroutes(nil, service, slots); share != 0 || regret != 0 {
		t.Fatalf("no samples: %v %v", share, regret)
	}
}
