package scheduler

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/models"
)

// propertyRuns is how many random clusters the property tests build.
const propertyRuns = 400

// constraintPool is what random deployments draw their constraints from.
var constraintPool = []string{
	"jurisdiction=EU", "jurisdiction!=US", "zone in (a,b)", "zone notin (c)",
	"!spot", "spot", "gpu.model in (H800,H100)", "gpu.model!=L40S",
}

// randomWorld builds a random cluster with a random history: nodes of
// mixed GPUs, labels and statuses, deployments of catalog models with
// constraints, priorities and spread, and placements anywhere, some of
// which break constraints or over-commit GPUs.
func randomWorld(t *testing.T, rng *rand.Rand) *world {
	w := newWorld(t)
	nodes := randomNodes(w, rng)
	deps := randomDeployments(w, rng)
	states := []state.PlacementState{state.PlacementReady, state.PlacementReady, state.PlacementPending, state.PlacementPulling, state.PlacementFailed}
	for _, d := range deps {
		for _, i := range rng.Perm(len(nodes))[:rng.Intn(min(3, len(nodes))+1)] {
			w.place(d, states[rng.Intn(len(states))], nodes[i])
		}
	}
	for _, n := range nodes {
		switch rng.Intn(16) {
		case 0:
			w.status(n, state.NodeCordoned, time.Minute)
		case 1:
			w.status(n, state.NodeDraining, time.Minute)
		case 2, 3:
			w.status(n, state.NodeDown, time.Duration(rng.Intn(15))*time.Minute)
		}
	}
	return w
}

// randomNodes registers up to 12 nodes (3 in a crowded cluster) of one
// GPU kind each, with labels and models on disk.
func randomNodes(w *world, rng *rand.Rand) []string {
	catalog := models.Builtin()
	kinds := []state.GPU{h800, h100, a100, l40s}
	size := 12
	if rng.Intn(3) == 0 {
		size = 3 // crowded: more preemption
	}
	nodes := make([]string, 1+rng.Intn(size))
	for i := range nodes {
		nodes[i] = fmt.Sprintf("n%02d", i)
		labels := []string{"zone=" + []string{"a", "b", "c"}[rng.Intn(3)]}
		switch rng.Intn(3) {
		case 0:
			labels = append(labels, "jurisdiction=EU")
		case 1:
			labels = append(labels, "jurisdiction=US")
		}
		if rng.Intn(5) == 0 {
			labels = append(labels, "spot=true")
		}
		w.node(nodes[i], gpus(kinds[rng.Intn(len(kinds))], []int{1, 2, 4, 8}[rng.Intn(4)]), labels...)
		if rng.Intn(4) == 0 {
			w.onDisk(nodes[i], catalog[rng.Intn(len(catalog))].Name, catalog[rng.Intn(len(catalog))].Name)
		}
	}
	return nodes
}

// randomDeployments puts up to 13 deployments of catalog models, now and
// then one of an unknown model or with a bad constraint.
func randomDeployments(w *world, rng *rand.Rand) []string {
	catalog := models.Builtin()
	deps := make([]string, rng.Intn(14))
	for i := range deps {
		deps[i] = fmt.Sprintf("d%02d", i)
		model := catalog[rng.Intn(len(catalog))].Name
		var cons []string
		for _, c := range constraintPool {
			if rng.Intn(6) == 0 {
				cons = append(cons, c)
			}
		}
		switch rng.Intn(40) {
		case 0:
			model = "nobody/unknown:1b"
		case 1:
			cons = append(cons, "zone in (a")
		}
		spread := ""
		if rng.Intn(3) == 0 {
			spread = "zone"
		}
		w.deploy(deps[i], model, rng.Intn(4), constraints(cons...), priority(rng.Intn(4)), spreadBy(spread))
	}
	return deps
}

// checkPlan holds a plan to the invariants, computed here rather than
// trusted to the scheduler's own accounting: no GPU over-committed,
// constraints hold, every replica reserves at least its model's layers.
func checkPlan(t *testing.T, s *state.State, p Plan, o Options) {
	t.Helper()
	if err := Verify(s, p, o); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	used := map[string]map[int]uint64{}
	for _, d := range p.Deployments {
		if d.Status == StatusInvalid {
			continue
		}
		dep := s.Deployments[d.Name]
		est := models.Estimate(mustModel(t, dep.Model), models.EstimateOptions{Context: o.Load.Context, GPUs: []uint64{hugeGPU}})
		for _, a := range d.Placements {
			n := s.Nodes[a.Node]
			for _, c := range dep.Constraints {
				pc, err := ParseConstraint(c)
				if err != nil {
					t.Fatalf("%s: %v", d.Name, err)
				}
				if pc.IsGPU() {
					for _, g := range a.GPUs {
						if !pc.MatchGPUModel(n.GPUs[g.Index].Model) {
							t.Fatalf("%s on %s uses GPU %d (%s) against %s", d.Name, a.Node, g.Index, n.GPUs[g.Index].Model, c)
						}
					}
				} else if why := pc.MatchLabels(n.Labels); why != "" {
					t.Fatalf("%s on %s: %s", d.Name, a.Node, why)
				}
			}
			if a.Bytes() < est.Weights+est.KV {
				t.Fatalf("%s on %s reserves %d bytes, less than its layers %d", d.Name, a.Node, a.Bytes(), est.Weights+est.KV)
			}
			if used[a.Node] == nil {
				used[a.Node] = map[int]uint64{}
			}
			for _, g := range a.GPUs {
				used[a.Node][g.Index] += g.Bytes
			}
		}
		if d.Status == StatusOK && len(d.Placements) < d.Replicas {
			t.Fatalf("%s ok with %d of %d replicas", d.Name, len(d.Placements), d.Replicas)
		}
	}
	for id, gs := range used {
		for idx, b := range gs {
			if limit := s.Nodes[id].GPUs[idx].MemoryBytes - o.Headroom; b > limit {
				t.Fatalf("GPU %d of %s over-committed: %d > %d", idx, id, b, limit)
			}
		}
	}
}

func TestPropertyPlansAreFeasible(t *testing.T) {
	for seed := range int64(propertyRuns) {
		rng := rand.New(rand.NewSource(seed))
		w := randomWorld(t, rng)
		o := opts()
		checkPlan(t, w.s, Schedule(w.s, o), o)
	}
}

func TestPropertyDeterministic(t *testing.T) {
	for seed := range int64(propertyRuns) {
		rng := rand.New(rand.NewSource(seed))
		w := randomWorld(t, rng)
		o := opts()
		a, b := Schedule(w.s, o), Schedule(w.s.Clone(), o)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: two runs differ:\n%+v\n%+v", seed, a, b)
		}
	}
}

// A run over the state its plan produced, its new replicas ready, adds
// and evicts nothing: it may only let go of replicas on leaving nodes
// whose replacements are now ready. The run after that changes nothing.
// The same holds after an urgent deployment arrives and evicts.
func TestPropertyStable(t *testing.T) {
	evictions := 0
	for seed := range int64(propertyRuns) {
		rng := rand.New(rand.NewSource(seed))
		w := randomWorld(t, rng)
		o := opts()
		settle(t, w, seed, o)
		catalog := models.Builtin()
		w.deploy("urgent", catalog[rng.Intn(len(catalog))].Name, 1+rng.Intn(3), priority(9))
		evictions += settle(t, w, seed, o)
	}
	t.Logf("%d evictions", evictions)
	if evictions == 0 {
		t.Fatal("no run evicted anything: the test does not reach preemption")
	}
}

// settle schedules and commits until the state is stable, checking that
// it takes at most one run to place and one to let drained replicas go,
// and returns the evictions of the first run.
func settle(t *testing.T, w *world, seed int64, o Options) int {
	t.Helper()
	p1 := w.schedule(o)
	checkPlan(t, w.s, p1, o)
	w.commit(p1, state.PlacementReady)
	p2 := w.schedule(o)
	checkPlan(t, w.s, p2, o)
	for _, d := range p2.Deployments {
		for _, a := range d.Placements {
			if a.Action == ActionPlace {
				t.Fatalf("seed %d: second run places %s on %s (%s)\nfirst plan %+v", seed, d.Name, a.Node, d.Reason, p1.Deployment(d.Name))
			}
		}
	}
	if len(p2.Evictions) > 0 {
		t.Fatalf("seed %d: second run evicts %+v", seed, p2.Evictions)
	}
	for _, r := range p2.Removals {
		if r.Cause != CauseDrained {
			t.Fatalf("seed %d: second run removes %+v", seed, r)
		}
	}
	w.commit(p2, state.PlacementReady)
	if p3 := w.schedule(o); p3.Changes() != 0 {
		t.Fatalf("seed %d: third run changes %d things: %+v %+v", seed, p3.Changes(), p3.Removals, p3.Evictions)
	}
	return len(p1.Evictions)
}
