package scheduler

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

func TestCarbonScore(t *testing.T) {
	tests := []struct {
		labels map[string]string
		want   float64
	}{
		{nil, 0},
		{map[string]string{"energy": "low-carbon"}, 1},
		{map[string]string{"energy": "grid"}, 0},
		{map[string]string{"carbon-intensity": "0"}, 1},
		{map[string]string{"carbon-intensity": "25"}, 0.8},
		{map[string]string{"carbon-intensity": "100"}, 0.5},
		{map[string]string{"carbon-intensity": "300"}, 0.25},
		{map[string]string{"carbon-intensity": "12.5"}, 100 / 112.5},
		// the intensity wins over the energy label
		{map[string]string{"carbon-intensity": "300", "energy": "low-carbon"}, 0.25},
		// not a number of grams: no preference
		{map[string]string{"carbon-intensity": "low"}, 0},
		{map[string]string{"carbon-intensity": "-5"}, 0},
		{map[string]string{"carbon-intensity": "Inf"}, 0},
		{map[string]string{"carbon-intensity": "NaN"}, 0},
	}
	for _, tc := range tests {
		if got := carbonScore(tc.labels); got != tc.want {
			t.Errorf("carbonScore(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
}

// placedOn schedules one deployment and returns its nodes.
func placedOn(t *testing.T, w *world, name, model string, replicas int, edit ...func(*state.Deployment)) []string {
	t.Helper()
	w.deploy(name, model, replicas, edit...)
	got, _ := nodesOf(t, w.schedule(opts()), name)
	return got
}

// TestLowCarbonBreaksTies: between nodes that are otherwise equal, the
// one on low-carbon power wins; without the labels the first by id does.
func TestLowCarbonBreaksTies(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string][]string // node -> labels
		want   []string
	}{
		{"no labels: the first by id", map[string][]string{"a": nil, "b": nil, "c": nil}, []string{"a"}},
		{"energy=low-carbon", map[string][]string{"a": nil, "b": {"energy=low-carbon"}, "c": {"energy=grid"}}, []string{"b"}},
		{"lowest carbon intensity", map[string][]string{"a": {"carbon-intensity=400"}, "b": {"carbon-intensity=900"},
			"c": {"carbon-intensity=30"}}, []string{"c"}},
		{"an intensity beats no label", map[string][]string{"a": nil, "b": {"carbon-intensity=700"}, "c": nil}, []string{"b"}},
		{"a bad intensity is no label", map[string][]string{"a": {"carbon-intensity=green"}, "b": nil, "c": nil}, []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			for _, id := range []string{"a", "b", "c"} {
				w.node(id, gpus(h100, 8), tc.labels[id]...)
			}
			if got := placedOn(t, w, "d", "deepseek-r1:14b", 1); !slices.Equal(got, tc.want) {
				t.Fatalf("placed on %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLowCarbonOnlyBreaksTies: the ranker never places on a node the
// filters reject, never beats spread, and never beats a real difference
// in packing.
func TestLowCarbonOnlyBreaksTies(t *testing.T) {
	green := "energy=low-carbon"
	tests := []struct {
		name  string
		setup func(w *world)
		edit  []func(*state.Deployment)
		n     int
		want  []string
	}{
		{"not a node the model does not fit", func(w *world) {
			w.node("a-coal", gpus(h100, 8), "carbon-intensity=900")
			w.node("b-green", gpus(l40s, 1), green)
		}, []func(*state.Deployment){func(d *state.Deployment) { d.Model = "qwen2.5:72b" }}, 1, []string{"a-coal"}},
		{"not a cordoned node", func(w *world) {
			w.node("a-coal", gpus(h100, 8))
			w.node("b-green", gpus(h100, 8), green)
			w.status("b-green", state.NodeCordoned, time.Minute)
		}, nil, 1, []string{"a-coal"}},
		{"not a node the constraints rule out", func(w *world) {
			w.node("a-coal", gpus(h100, 8), "jurisdiction=EU")
			w.node("b-green", gpus(h100, 8), "jurisdiction=US", green)
		}, []func(*state.Deployment){constraints("jurisdiction=EU")}, 1, []string{"a-coal"}},
		{"not the GPU model asked for", func(w *world) {
			w.node("a-coal", gpus(h100, 8))
			w.node("b-green", gpus(a100, 8), green)
		}, []func(*state.Deployment){constraints("gpu.model=H100")}, 1, []string{"a-coal"}},
		{"spread wins", func(w *world) {
			w.node("a-1", gpus(h100, 8), "zone=a", green)
			w.node("a-2", gpus(h100, 8), "zone=a", green)
			w.node("b-1", gpus(h100, 8), "zone=b", "carbon-intensity=900")
		}, []func(*state.Deployment){spreadBy("zone")}, 2, []string{"a-1", "b-1"}},
		{"packing wins", func(w *world) {
			w.node("a-small", gpus(h100, 2), "carbon-intensity=900")
			w.node("b-big", gpus(h100, 8), green)
		}, nil, 1, []string{"a-small"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tc.setup(w)
			if got := placedOn(t, w, "d", "deepseek-r1:14b", tc.n, tc.edit...); !slices.Equal(got, tc.want) {
				t.Fatalf("placed on %v, want %v", got, tc.want)
			}
		})
	}
}

// TestExplainShowsLowCarbon: explain lists the ranker with its weight and
// value where nodes carry the labels, and leaves it out where none does.
func TestExplainShowsLowCarbon(t *testing.T) {
	w := newWorld(t)
	w.node("a", gpus(h100, 8))
	w.node("b", gpus(h100, 8), "carbon-intensity=25")
	w.deploy("d", "deepseek-r1:14b", 1)
	e := Explain(w.s, "d", opts())
	if len(e.Nodes) != 2 {
		t.Fatalf("%+v", e.Nodes)
	}
	for _, n := range e.Nodes {
		want := map[string]float64{"a": 0, "b": 0.8}[n.Node]
		i := slices.IndexFunc(n.Scores, func(s Score) bool { return s.Ranker == RankLowCarbon })
		if i < 0 || n.Scores[i].Weight != lowCarbonWeight || n.Scores[i].Value != want {
			t.Fatalf("node %s scores %+v, want low-carbon %v with weight %v", n.Node, n.Scores, want, lowCarbonWeight)
		}
	}
	if e.Nodes[1].Verdict != VerdictPlaced || !strings.Contains(e.String(), "low-carbon=0.800") {
		t.Fatalf("explanation:\n%s", e)
	}

	plain := newWorld(t)
	plain.node("a", gpus(h100, 8), "energy=")
	plain.deploy("d", "deepseek-r1:14b", 1)
	if s := Explain(plain.s, "d", opts()).String(); strings.Contains(s, RankLowCarbon) {
		t.Fatalf("low-carbon shown in a cluster without the labels:\n%s", s)
	}
}
