package scheduler

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

// TestCordonKeepsReplicas: a cordoned node keeps the replicas it runs
// and takes no new one; only a drain moves them.
func TestCordonKeepsReplicas(t *testing.T) {
	w := newWorld(t)
	w.node("old", gpus(h100, 2))
	w.node("new", gpus(h100, 2))
	w.deploy("d", "llama3.1:70b", 1)
	w.place("d", state.PlacementReady, "old")
	w.status("old", state.NodeCordoned, time.Minute)
	p := w.schedule(opts())
	if got := actions(t, p, "d"); !maps.Equal(got, map[string]Action{"old": ActionKeep}) || len(p.Removals) > 0 {
		t.Fatalf("cordon moved the replica: actions %v, removals %+v", got, p.Removals)
	}
	w.commit(p, "")
	w.deploy("e", "llama3.1:70b", 1)
	p = w.schedule(opts())
	if got := actions(t, p, "e"); !maps.Equal(got, map[string]Action{"new": ActionPlace}) {
		t.Fatalf("a new replica on a cordoned node: %v", got)
	}
}

func TestDrainIsMakeBeforeBreak(t *testing.T) {
	st := state.NodeDraining
	t.Run(string(st), func(t *testing.T) {
		w := newWorld(t)
		w.node("old", gpus(h100, 1))
		w.node("new", gpus(h100, 1))
		w.deploy("d", "llama3.1:70b", 1)
		w.place("d", state.PlacementReady, "old")
		w.status("old", st, time.Minute)

		steps := []struct {
			name   string
			report state.PlacementState // of the new replica before the run; "" for none
			want   map[string]Action
			remove bool
		}{
			{"replacement placed, old kept", "", map[string]Action{"old": ActionDrain, "new": ActionPlace}, false},
			{"replacement pulling, old kept", state.PlacementPulling, map[string]Action{"old": ActionDrain, "new": ActionKeep}, false},
			{"replacement ready, old removed", state.PlacementReady, map[string]Action{"new": ActionKeep}, true},
		}
		for _, step := range steps {
			if step.report != "" {
				w.report("d", "new", step.report)
			}
			p := w.schedule(opts())
			if got := actions(t, p, "d"); !maps.Equal(got, step.want) {
				t.Fatalf("%s: actions %v, want %v", step.name, got, step.want)
			}
			removed := len(p.Removals) == 1 && p.Removals[0].Cause == CauseDrained && p.Removals[0].Node == "old"
			if removed != step.remove || (!step.remove && len(p.Removals) > 0) {
				t.Fatalf("%s: removals %+v", step.name, p.Removals)
			}
			w.commit(p, "")
		}
	})
}

func TestDrainWithoutRoomKeepsTheOldReplica(t *testing.T) {
	w := newWorld(t)
	w.node("old", gpus(h100, 1))
	w.node("small", gpus(l40s, 1))
	w.deploy("d", "qwen2.5:72b", 1)
	w.place("d", state.PlacementReady, "old")
	w.status("old", state.NodeDraining, time.Minute)
	p := w.schedule(opts())
	_, d := nodesOf(t, p, "d")
	if got := actions(t, p, "d"); !maps.Equal(got, map[string]Action{"old": ActionDrain}) {
		t.Fatalf("actions %v, want the old replica kept", got)
	}
	if d.Status != StatusUnplaceable || !strings.Contains(d.Reason, "1 replica(s) kept on leaving nodes meanwhile") {
		t.Fatalf("status %s %q", d.Status, d.Reason)
	}
}

func TestNodeLoss(t *testing.T) {
	cases := []struct {
		name string
		down time.Duration
		want map[string]Action
		lost bool
	}{
		{"within the grace: kept", time.Minute, map[string]Action{"gone": ActionKeep}, false},
		{"at the grace: kept", DefaultDownGrace, map[string]Action{"gone": ActionKeep}, false},
		{"past the grace: moved", 10 * time.Minute, map[string]Action{"spare": ActionPlace}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.node("gone", gpus(h100, 1))
			w.node("spare", gpus(h100, 1))
			w.deploy("d", "llama3.1:70b", 1)
			w.place("d", state.PlacementReady, "gone")
			w.status("gone", state.NodeDown, tc.down)
			p := w.schedule(opts())
			if got := actions(t, p, "d"); !maps.Equal(got, tc.want) {
				t.Fatalf("actions %v, want %v", got, tc.want)
			}
			lost := len(p.Removals) == 1 && p.Removals[0].Cause == CauseNodeLost
			if lost != tc.lost || (!tc.lost && len(p.Removals) > 0) {
				t.Fatalf("removals %+v", p.Removals)
			}
		})
	}
}

// preemptionWorld has one H100 node holding a replica of "low" (43.5 GiB),
// so a replica of 47 GiB does not fit beside it.
func preemptionWorld(t *testing.T, lowPrio int) *world {
	w := newWorld(t)
	w.node("n", gpus(h100, 1))
	w.deploy("low", "llama3.1:70b", 1, priority(lowPrio))
	w.place("low", state.PlacementReady, "n")
	return w
}

func TestPreemption(t *testing.T) {
	cases := []struct {
		name      string
		low, high int
		noPreempt bool
		evicts    bool
	}{
		{"higher priority evicts lower", 0, 10, false, true},
		{"negative priorities compare too", -5, -1, false, true},
		{"equal priority does not evict", 3, 3, false, false},
		{"lower priority does not evict higher", 5, 1, false, false},
		{"preemption off", 0, 10, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := preemptionWorld(t, tc.low)
			w.deploy("high", "qwen2.5:72b", 1, priority(tc.high))
			o := opts()
			o.NoPreemption = tc.noPreempt
			p := w.schedule(o)
			highNodes, high := nodesOf(t, p, "high")
			lowNodes, low := nodesOf(t, p, "low")
			if !tc.evicts {
				if len(p.Evictions) > 0 || len(highNodes) != 0 || len(lowNodes) != 1 || high.Status != StatusUnplaceable {
					t.Fatalf("evictions %+v, high on %v, low on %v", p.Evictions, highNodes, lowNodes)
				}
				return
			}
			want := Eviction{Deployment: "low", Node: "n", Priority: tc.low, By: "high", ByPriority: tc.high}
			if len(p.Evictions) != 1 {
				t.Fatalf("evictions %+v, want one", p.Evictions)
			}
			got := p.Evictions[0]
			got.Reason = ""
			if got != want || !strings.Contains(p.Evictions[0].Reason, "evicted for high") {
				t.Fatalf("eviction %+v, want %+v", p.Evictions[0], want)
			}
			if len(highNodes) != 1 || len(lowNodes) != 0 || low.Status != StatusUnplaceable {
				t.Fatalf("high on %v, low on %v (%s)", highNodes, lowNodes, low.Status)
			}
		})
	}
}

func TestPreemptionChoosesFewestAndLowestVictims(t *testing.T) {
	cases := []struct {
		name  string
		setup func(w *world)
		want  string   // node the newcomer lands on
		gone  []string // deployments evicted
	}{
		{
			name: "one large victim over two small ones",
			setup: func(w *world) {
				// a: 58.8 GiB in three replicas, two of which must go;
				// b: 43.5 GiB in one.
				w.deploy("s1", "gemma2:27b", 1, priority(1))
				w.deploy("s2", "gemma2:27b", 1, priority(1))
				w.deploy("s3", "qwen2.5:32b", 1, priority(1))
				w.deploy("big", "llama3.1:70b", 1, priority(1))
				w.place("s1", state.PlacementReady, "a")
				w.place("s2", state.PlacementReady, "a")
				w.place("s3", state.PlacementReady, "a")
				w.place("big", state.PlacementReady, "b")
			},
			want: "b", gone: []string{"big"},
		},
		{
			name: "the lowest priority victim",
			setup: func(w *world) {
				w.deploy("p2", "llama3.1:70b", 1, priority(2))
				w.deploy("p1", "llama3.1:70b", 1, priority(1))
				w.place("p2", state.PlacementReady, "a")
				w.place("p1", state.PlacementReady, "b")
			},
			want: "b", gone: []string{"p1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.node("a", gpus(h100, 1))
			w.node("b", gpus(h100, 1))
			tc.setup(w)
			w.deploy("new", "qwen2.5:72b", 1, priority(9))
			p := w.schedule(opts())
			if got, _ := nodesOf(t, p, "new"); len(got) != 1 || got[0] != tc.want {
				t.Fatalf("new on %v, want %s", got, tc.want)
			}
			var gone []string
			for _, e := range p.Evictions {
				gone = append(gone, e.Deployment)
			}
			if strings.Join(gone, ",") != strings.Join(tc.gone, ",") {
				t.Fatalf("evicted %v, want %v", gone, tc.gone)
			}
		})
	}
}

func TestEvictedReplicaMovesWhereThereIsRoom(t *testing.T) {
	w := newWorld(t)
	w.node("a", gpus(h100, 1), "tier=gold")
	w.node("b", gpus(h100, 1))
	w.deploy("low", "llama3.1:70b", 1)
	w.place("low", state.PlacementReady, "a")
	w.deploy("high", "qwen2.5:72b", 1, priority(5), constraints("tier=gold"))
	p := w.schedule(opts())
	if got := actions(t, p, "low"); !maps.Equal(got, map[string]Action{"b": ActionPlace}) {
		t.Fatalf("low %v, want re-placed on b", got)
	}
	if got := actions(t, p, "high"); !maps.Equal(got, map[string]Action{"a": ActionPlace}) {
		t.Fatalf("high %v, want a", got)
	}
}
