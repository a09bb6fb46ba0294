package scheduler

import (
	"testing"

	"github.com/sovra/sovra/cluster/state"
)

// TestShrunkNodeSheds checks which replica leaves a node whose layout no
// longer fits (its GPU was swapped for a smaller one): the one of the
// lowest priority, and among equal priorities the smallest, whatever
// their order in the layout.
func TestShrunkNodeSheds(t *testing.T) {
	// mixtral:8x7b (26 GiB at 8192 tokens) and qwen2.5:32b (21 GiB) share
	// an H100; an L40S holds either, not both.
	cases := []struct {
		name             string
		bigPrio, smlPrio int
		leaves, stays    string
	}{
		{"the lower priority leaves though it is larger", 0, 5, "big", "small"},
		{"the lower priority leaves though it is smaller", 5, 0, "small", "big"},
		{"of equal priorities the smaller leaves", 3, 3, "small", "big"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.node("n", gpus(h100, 1))
			w.deploy("big", "mixtral:8x7b", 1, priority(tc.bigPrio))
			w.deploy("small", "qwen2.5:32b", 1, priority(tc.smlPrio))
			w.place("big", state.PlacementReady, "n")
			w.place("small", state.PlacementReady, "n")
			if p := w.schedule(opts()); p.Changes() != 0 {
				t.Fatalf("both fit on the H100, yet the plan changes %d things: %+v", p.Changes(), p.Removals)
			}
			w.node("n", gpus(l40s, 1))
			p := w.schedule(opts())
			if len(p.Removals) != 1 {
				t.Fatalf("removals %+v, want exactly one", p.Removals)
			}
			r := p.Removals[0]
			if r.Deployment != tc.leaves || r.Node != "n" || r.Cause != CauseInfeasible {
				t.Fatalf("removal %+v, want %s to leave n as infeasible", r, tc.leaves)
			}
			if got, _ := nodesOf(t, p, tc.stays); len(got) != 1 || got[0] != "n" {
				t.Fatalf("%s is on %v, want it kept on n", tc.stays, got)
			}
		})
	}
}
