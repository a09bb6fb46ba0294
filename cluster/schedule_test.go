package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/scheduler"
)

// withGPU gives every node of the cluster one 48 GiB GPU and waits until
// the leader's state has them all.
func (tc *tcluster) withGPU() {
	tc.t.Helper()
	for _, n := range tc.nodes {
		n.c.SetNode(state.Node{Labels: map[string]string{"zone": n.id}, Version: "test",
			GPUs: []state.GPU{{Index: 0, Model: "NVIDIA L40S", MemoryBytes: 48 << 30}}})
	}
	l := tc.leader()
	testwait.For(tc.t, 10*time.Second, "GPUs registered", func() bool {
		ok := true
		l.c.machine.Read(func(s *state.State) {
			for _, n := range tc.nodes {
				ok = ok && s.Nodes[n.id] != nil && len(s.Nodes[n.id].GPUs) == 1
			}
		})
		return ok
	})
}

func placementsOf(n *tnode, dep string) []string {
	var out []string
	n.c.machine.Read(func(s *state.State) {
		for _, p := range s.PlacementsOf(dep) {
			out = append(out, p.Node)
		}
	})
	return out
}

// TestLeaderSchedulesAndSettles writes a deployment through a follower:
// the leader places it, and its later runs, periodic ones included,
// commit nothing. Followers never schedule.
func TestLeaderSchedulesAndSettles(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3, sched: SchedulingConfig{Debounce: 5 * time.Millisecond, Interval: 30 * time.Millisecond}})
	tc.withGPU()
	l, f := tc.leader(), tc.followers()[0]
	if _, err := f.c.Apply(ctxFor(t, 10*time.Second), state.Command{Type: state.TypePutDeployment,
		Body: state.PutDeployment{Deployment: state.Deployment{Name: "d", Model: "llama3.2:1b", Replicas: 2}}}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "two replicas", func() bool { return len(placementsOf(f, "d")) == 2 })

	index := l.c.machine.Index()
	first, _ := l.c.LastSchedule()
	testwait.For(t, 10*time.Second, "five more runs", func() bool {
		run, _ := l.c.LastSchedule()
		return run.Time.After(first.Time.Add(5 * 30 * time.Millisecond))
	})
	run, _ := l.c.LastSchedule()
	if got := l.c.machine.Index(); got != index || run.Committed != 0 || run.Plan.Changes() != 0 || run.Err != nil {
		t.Fatalf("a settled leader wrote: index %d -> %d, last run %+v", index, got, run)
	}
	if d := run.Plan.Deployment("d"); d == nil || d.Status != scheduler.StatusOK {
		t.Fatalf("plan of d: %+v", d)
	}
	for _, n := range tc.followers() {
		if _, ok := n.c.LastSchedule(); ok {
			t.Errorf("follower %s scheduled", n.id)
		}
	}
}

// TestNewLeaderTakesOverScheduling stops the leader: the new leader
// schedules a deployment written after the failover and keeps the lost
// node's replica while the node is within its grace.
func TestNewLeaderTakesOverScheduling(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3, sched: SchedulingConfig{Debounce: 5 * time.Millisecond, DownGrace: time.Hour}})
	tc.withGPU()
	old := tc.leader()
	if _, err := old.c.Apply(ctxFor(t, 10*time.Second), state.Command{Type: state.TypePutDeployment,
		Body: state.PutDeployment{Deployment: state.Deployment{Name: "a", Model: "llama3.2:1b", Replicas: 3}}}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "three replicas", func() bool { return len(placementsOf(old, "a")) == 3 })
	tc.stop(old)
	l := tc.leader()
	tc.waitStatus(state.NodeDown, old)
	if _, err := l.c.Apply(ctxFor(t, 10*time.Second), state.Command{Type: state.TypePutDeployment,
		Body: state.PutDeployment{Deployment: state.Deployment{Name: "b", Model: "llama3.2:1b", Replicas: 3}}}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "b on the live nodes", func() bool { return len(placementsOf(l, "b")) == 2 })
	if got := placementsOf(l, "a"); len(got) != 3 {
		t.Fatalf("a replica left a node within its grace: %v", got)
	}
	// The run is recorded once its commit returns, which may be after the
	// placements it committed are applied and seen above.
	var d *scheduler.DeploymentPlan
	testwait.For(t, 10*time.Second, "the run that placed b recorded", func() bool {
		run, ok := l.c.LastSchedule()
		d = run.Plan.Deployment("b")
		return ok && d != nil
	})
	if d.Status != scheduler.StatusPartial {
		t.Fatalf("plan of b: %+v", d)
	}
}

// TestFingerprintIgnoresProgress checks what wakes the scheduler: a
// placement's state does, its pull progress does not.
func TestFingerprintIgnoresProgress(t *testing.T) {
	c := &Cluster{machine: state.NewMachine()}
	index := uint64(0)
	apply := func(typ state.Type, body any) {
		t.Helper()
		entry, err := state.Encode(state.Command{Type: typ, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		index++
		if err := c.machine.Apply(index, entry).Err(); err != nil {
			t.Fatal(err)
		}
	}
	apply(state.TypeRegisterNode, state.RegisterNode{Node: state.Node{ID: "n1"}})
	apply(state.TypePutDeployment, state.PutDeployment{Deployment: state.Deployment{Name: "d", Model: "m", Replicas: 1}})
	apply(state.TypeSetPlacements, state.SetPlacements{Deployments: map[string][]string{"d": {"n1"}}})
	before := c.fingerprint()
	apply(state.TypeReportPlacement, state.ReportPlacement{Deployment: "d", Node: "n1", State: state.PlacementPending, Progress: 0.5})
	if c.fingerprint() != before {
		t.Fatal("pull progress changed the fingerprint")
	}
	apply(state.TypeReportPlacement, state.ReportPlacement{Deployment: "d", Node: "n1", State: state.PlacementReady})
	if c.fingerprint() == before {
		t.Fatal("a ready replica left the fingerprint alone")
	}
	before = c.fingerprint()
	apply(state.TypeSetNodeStatus, state.SetNodeStatus{ID: "n1", Status: state.NodeCordoned, Time: 5})
	if c.fingerprint() == before {
		t.Fatal("a cordon left the fingerprint alone")
	}
	spec := state.ModelSpec{Name: "m", Architecture: "llama", Parameters: 1e6, FileSize: 4e6,
		Layers: 2, Embedding: 64, Heads: 4, KVHeads: 2, HeadDimK: 16, HeadDimV: 16, ContextLength: 2048}
	for _, step := range []struct {
		what string
		typ  state.Type
		body any
	}{
		{"registering a model", state.TypeRegisterModel, state.RegisterModel{Model: spec}},
		{"new figures", state.TypeRegisterModel, state.RegisterModel{Model: spec}},
		{"unregistering a model", state.TypeUnregisterModel, state.UnregisterModel{Name: "m"}},
	} {
		before = c.fingerprint()
		apply(step.typ, step.body)
		if c.fingerprint() == before {
			t.Fatalf("%s left the fingerprint alone", step.what)
		}
	}
}

// TestLeaderPlacesARegisteredModel writes a deployment of a model the
// catalog does not know: it waits, invalid, until the model is
// registered, and is placed at once then.
func TestLeaderPlacesARegisteredModel(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3, sched: SchedulingConfig{Debounce: 5 * time.Millisecond}})
	tc.withGPU()
	l, f := tc.leader(), tc.followers()[0]
	ctx := ctxFor(t, 10*time.Second)
	if _, err := f.c.Apply(ctx, state.Command{Type: state.TypePutDeployment,
		Body: state.PutDeployment{Deployment: state.Deployment{Name: "d", Model: "acme/tiny", Replicas: 2}}}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "a run over the deployment", func() bool {
		run, _ := l.c.LastSchedule()
		d := run.Plan.Deployment("d")
		return d != nil && d.Status == scheduler.StatusInvalid && strings.HasPrefix(d.Reason, scheduler.ReasonFiguresUnknown)
	})
	spec := state.ModelSpec{Name: "acme/tiny:latest", Architecture: "llama", Parameters: 1e6, FileSize: 4e6,
		Layers: 2, Embedding: 64, Heads: 4, KVHeads: 2, HeadDimK: 16, HeadDimV: 16, ContextLength: 2048}
	if _, err := f.c.Apply(ctx, state.Command{Type: state.TypeRegisterModel, Body: state.RegisterModel{Model: spec, Create: true}}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "two replicas", func() bool { return len(placementsOf(f, "d")) == 2 })
}
