package node

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/scheduler"
)

// layoutState is a state of two nodes: n1 with 8 H100s holding a
// 405B model split over several GPUs, a 14B model and a 7B model, and n2
// holding a replica of the 14B model and one of a model of its own.
func layoutState(t *testing.T) *state.State {
	t.Helper()
	s := state.New()
	var index uint64
	apply := func(typ state.Type, body any) {
		t.Helper()
		e, err := state.Encode(state.Command{Type: typ, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		index++
		if out := s.Apply(index, e); out.Err() != nil {
			t.Fatalf("%v: %v", typ, out.Err())
		}
	}
	h100 := make([]state.GPU, 8)
	for i := range h100 {
		h100[i] = state.GPU{Index: i, Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 81559 << 20, UUID: fmt.Sprintf("GPU-%d", i)}
	}
	for _, id := range []string{"n1", "n2"} {
		apply(state.TypeRegisterNode, state.RegisterNode{Node: state.Node{ID: id, GPUs: h100, Labels: map[string]string{"zone": id}},
			Time: time.Now().Add(-time.Hour).UnixMilli()})
	}
	// As many replicas as placed: the state is stable, the scheduler
	// places nothing more.
	deps := map[string]string{"big": "llama3.1:405b", "mid": "deepseek-r1:14b", "small": "qwen2.5:7b", "other": "deepseek-r1:32b"}
	for name, model := range deps {
		replicas := map[bool]int{true: 2, false: 1}[name == "mid"]
		apply(state.TypePutDeployment, state.PutDeployment{Deployment: state.Deployment{Name: name, Model: model, Replicas: replicas}, Create: true})
	}
	apply(state.TypeSetPlacements, state.SetPlacements{Deployments: map[string][]string{
		"big": {"n1"}, "mid": {"n1", "n2"}, "small": {"n1"}, "other": {"n2"}}})
	return s
}

// TestLayoutOfMatchesTheWholeState: the layout worked out from a node's
// part of the state is the one the scheduler gives over the whole state.
func TestLayoutOfMatchesTheWholeState(t *testing.T) {
	s := layoutState(t)
	opts := scheduler.DefaultOptions(time.Now())
	whole := scheduler.Schedule(s, opts)
	if whole.Changes() != 0 {
		t.Fatalf("the state is not stable: %d changes planned", whole.Changes())
	}
	for _, id := range []string{"n1", "n2"} {
		got := layoutOf(nodePart(s, id), id, opts)
		want := map[string][]int{}
		for _, dp := range whole.Deployments {
			if a := dp.Placement(id); a != nil {
				for _, g := range a.GPUs {
					want[s.Deployments[dp.Name].Model] = append(want[s.Deployments[dp.Name].Model], g.Index)
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: layout %v, the whole state's %v", id, got, want)
		}
		if id == "n1" && (len(got) != 3 || len(got["llama3.1:405b"]) < 2) {
			t.Fatalf("n1: layout %v, want three models, the 405B over several GPUs", got)
		}
	}
	if layoutOf(nodePart(s, "n3"), "n3", opts) != nil {
		t.Fatal("a layout for a node that is not a member")
	}
}

// TestNodePartIsACopy: changing the state after the copy changes nothing
// in it.
func TestNodePartIsACopy(t *testing.T) {
	s := layoutState(t)
	part := nodePart(s, "n1")
	if len(part.Nodes) != 1 || len(part.Placements) != 3 || len(part.Deployments) != 3 {
		t.Fatalf("part: %d nodes, %d placements, %d deployments", len(part.Nodes), len(part.Placements), len(part.Deployments))
	}
	s.Nodes["n1"].GPUs[0].MemoryBytes = 1
	s.Nodes["n1"].Labels["zone"] = "changed"
	for _, p := range s.Placements {
		p.State = state.PlacementFailed
	}
	n := part.Nodes["n1"]
	if n.GPUs[0].MemoryBytes == 1 || n.Labels["zone"] != "n1" ||
		slices.ContainsFunc(part.PlacementsOf("big"), func(p *state.Placement) bool { return p.State == state.PlacementFailed }) {
		t.Fatal("the part shares memory with the state")
	}
}
