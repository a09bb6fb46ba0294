package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/models"
)

const gibi = 1 << 30

// GPU kinds as nvidia-smi names them, with the memory it reports.
var (
	h800 = state.GPU{Model: "NVIDIA H800", MemoryBytes: 81559 << 20}
	h100 = state.GPU{Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 81559 << 20}
	a100 = state.GPU{Model: "NVIDIA A100-SXM4-80GB", MemoryBytes: 81920 << 20}
	l40s = state.GPU{Model: "NVIDIA L40S", MemoryBytes: 46068 << 20}
)

// gpus returns count GPUs of a kind, indexed from 0.
func gpus(kind state.GPU, count int) []state.GPU {
	out := make([]state.GPU, count)
	for i := range out {
		out[i] = kind
		out[i].Index = i
		out[i].UUID = fmt.Sprintf("GPU-%d", i)
	}
	return out
}

// now is the clock of the tests; opts the options they run with.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func opts() Options { return DefaultOptions(now) }

// world builds a state through the commands the cluster applies.
type world struct {
	t    testing.TB
	s    *state.State
	next uint64
}

func newWorld(t testing.TB) *world { return &world{t: t, s: state.New(), next: 1} }

func (w *world) apply(typ state.Type, body any) {
	w.t.Helper()
	b, err := state.Encode(state.Command{Type: typ, Body: body})
	if err != nil {
		w.t.Fatal(err)
	}
	if out := w.s.Apply(w.next, b); out.Err() != nil {
		w.t.Fatalf("%v: %v", typ, out.Err())
	}
	w.next++
}

// node registers a ready node; labels are "key=value".
func (w *world) node(id string, g []state.GPU, labels ...string) {
	w.t.Helper()
	n := state.Node{ID: id, GPUs: g, Labels: map[string]string{}}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		n.Labels[k] = v
	}
	w.apply(state.TypeRegisterNode, state.RegisterNode{Node: n, Time: now.Add(-time.Hour).UnixMilli()})
}

// onDisk re-registers a node with models on its disk.
func (w *world) onDisk(id string, names ...string) {
	w.t.Helper()
	n := *w.s.Nodes[id]
	n.Models = names
	w.apply(state.TypeRegisterNode, state.RegisterNode{Node: n})
}

// status sets a node's status as of ago before now.
func (w *world) status(id string, st state.NodeStatus, ago time.Duration) {
	w.t.Helper()
	w.apply(state.TypeSetNodeStatus, state.SetNodeStatus{ID: id, Status: st, Time: now.Add(-ago).UnixMilli()})
}

// deploy puts a deployment; edit may change it first.
func (w *world) deploy(name, model string, replicas int, edit ...func(*state.Deployment)) {
	w.t.Helper()
	d := state.Deployment{Name: name, Model: model, Replicas: replicas}
	for _, e := range edit {
		e(&d)
	}
	w.apply(state.TypePutDeployment, state.PutDeployment{Deployment: d})
}

func priority(p int) func(*state.Deployment) { return func(d *state.Deployment) { d.Priority = p } }

func constraints(c ...string) func(*state.Deployment) {
	return func(d *state.Deployment) { d.Constraints = c }
}

func spreadBy(k string) func(*state.Deployment) { return func(d *state.Deployment) { d.SpreadBy = k } }

// place puts replicas of a deployment on nodes, in a placement state.
func (w *world) place(dep string, st state.PlacementState, nodes ...string) {
	w.t.Helper()
	all := nodes
	for _, p := range w.s.PlacementsOf(dep) {
		all = append(all, p.Node)
	}
	w.apply(state.TypeSetPlacements, state.SetPlacements{Deployments: map[string][]string{dep: all}})
	for _, n := range nodes {
		w.report(dep, n, st)
	}
}

func (w *world) report(dep, node string, st state.PlacementState) {
	w.t.Helper()
	w.apply(state.TypeReportPlacement, state.ReportPlacement{Deployment: dep, Node: node, State: st})
}

// commit applies a plan as the leader would: the changed node sets, then
// the new replicas reported in state st ("" leaves them pending).
func (w *world) commit(p Plan, st state.PlacementState) {
	w.t.Helper()
	if sp := p.SetPlacements(); len(sp.Deployments) > 0 {
		w.apply(state.TypeSetPlacements, sp)
	}
	if st == "" {
		return
	}
	for _, d := range p.Deployments {
		for _, a := range d.Placements {
			if a.Action == ActionPlace {
				w.report(d.Name, a.Node, st)
			}
		}
	}
}

// schedule runs the scheduler and holds the plan to Verify.
func (w *world) schedule(o Options) Plan {
	w.t.Helper()
	p := Schedule(w.s, o)
	if err := Verify(w.s, p, o); err != nil {
		w.t.Fatalf("plan fails Verify: %v", err)
	}
	return p
}

// nodesOf returns a deployment's nodes in the plan, and its plan.
func nodesOf(t testing.TB, p Plan, dep string) ([]string, *DeploymentPlan) {
	t.Helper()
	d := p.Deployment(dep)
	if d == nil {
		t.Fatalf("no deployment %q in the plan", dep)
	}
	return d.Nodes(), d
}

// actions maps node to action for one deployment.
func actions(t testing.TB, p Plan, dep string) map[string]Action {
	t.Helper()
	_, d := nodesOf(t, p, dep)
	out := map[string]Action{}
	for _, a := range d.Placements {
		out[a.Node] = a.Action
	}
	return out
}

func mustModel(t testing.TB, name string) models.Model {
	t.Helper()
	m, ok := models.Lookup(name)
	if !ok {
		t.Fatalf("no model %q", name)
	}
	return m
}
