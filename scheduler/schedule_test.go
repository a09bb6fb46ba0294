package scheduler

import (
	"slices"
	"strings"
	"testing"

	"github.com/sovra/sovra/cluster/state"
)

func TestDeepSeekV3NeedsAnEightByEightyNode(t *testing.T) {
	cases := []struct {
		name       string
		nodes      map[string][]state.GPU
		replicas   int
		want       []string
		wantStatus Status
		wantReason string
	}{
		{
			name:     "lands on the H800 node only",
			nodes:    map[string][]state.GPU{"a100x4": gpus(a100, 4), "h800x8": gpus(h800, 8), "l40sx8": gpus(l40s, 8)},
			replicas: 1, want: []string{"h800x8"}, wantStatus: StatusOK,
		},
		{
			name:     "second replica has nowhere to go",
			nodes:    map[string][]state.GPU{"a100x4": gpus(a100, 4), "h800x8": gpus(h800, 8), "l40sx8": gpus(l40s, 8)},
			replicas: 2, want: []string{"h800x8"}, wantStatus: StatusPartial,
			wantReason: "1 of 2 replicas placed: no ready node has",
		},
		{
			name:     "neither 4xA100 nor 8xL40S holds it",
			nodes:    map[string][]state.GPU{"a100x4": gpus(a100, 4), "l40sx8": gpus(l40s, 8)},
			replicas: 1, want: []string{}, wantStatus: StatusUnplaceable,
			wantReason: "(of 2 nodes: 2 short of VRAM)",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			for id, g := range tc.nodes {
				w.node(id, g)
			}
			w.deploy("v3", "deepseek-v3:671b", tc.replicas)
			p := w.schedule(opts())
			got, d := nodesOf(t, p, "v3")
			if !slices.Equal(got, tc.want) {
				t.Fatalf("nodes %v, want %v", got, tc.want)
			}
			if d.Status != tc.wantStatus || !strings.Contains(d.Reason, tc.wantReason) {
				t.Fatalf("status %s %q, want %s containing %q", d.Status, d.Reason, tc.wantStatus, tc.wantReason)
			}
			if len(got) == 1 {
				a := d.Placements[0]
				if len(a.GPUs) < 5 || a.Bytes() < 370*gibi {
					t.Fatalf("reserves %s over %d GPUs, want a split over the node", gib(a.Bytes()), len(a.GPUs))
				}
			}
		})
	}
}

func TestDistillsTakeSmallGPUsAndKeepTheBigNodeWhole(t *testing.T) {
	w := newWorld(t)
	w.node("h800", gpus(h800, 8))
	w.node("l40s-1", gpus(l40s, 8))
	w.node("l40s-2", gpus(l40s, 8))
	distills := []string{"deepseek-r1:7b", "deepseek-r1:14b", "deepseek-r1:32b", "deepseek-r1:8b"}
	for _, m := range distills {
		w.deploy(strings.ReplaceAll(m, ":", "-"), m, 2)
	}
	p := w.schedule(opts())
	for _, m := range distills {
		name := strings.ReplaceAll(m, ":", "-")
		got, d := nodesOf(t, p, name)
		if !slices.Equal(got, []string{"l40s-1", "l40s-2"}) || d.Status != StatusOK {
			t.Errorf("%s on %v (%s), want one replica on each L40S node", name, got, d.Status)
		}
	}
	w.commit(p, state.PlacementReady)
	w.deploy("v3", "deepseek-v3:671b", 1)
	p = w.schedule(opts())
	if got, _ := nodesOf(t, p, "v3"); !slices.Equal(got, []string{"h800"}) {
		t.Fatalf("v3 on %v, want the H800 node kept whole for it", got)
	}
	if n := p.Changes(); n != 1 {
		t.Fatalf("adding v3 made %d changes, want 1", n)
	}
}

func TestConstraintsKeepReplicasInTheirJurisdiction(t *testing.T) {
	cases := []struct {
		name       string
		constraint []string
		want       []string
	}{
		{"equals", []string{"jurisdiction=EU"}, []string{"eu-1", "eu-2"}},
		{"in", []string{"jurisdiction in (EU,CH)"}, []string{"ch-1", "eu-1", "eu-2"}},
		{"not equals takes unlabelled nodes", []string{"jurisdiction!=US"}, []string{"ch-1", "eu-1", "eu-2", "plain"}},
		{"notin", []string{"jurisdiction notin (US,CH)"}, []string{"eu-1", "eu-2", "plain"}},
		{"exists", []string{"jurisdiction"}, []string{"ch-1", "eu-1", "eu-2", "us-1", "us-2"}},
		{"not exists", []string{"!jurisdiction"}, []string{"plain"}},
		{"gpu model", []string{"jurisdiction=EU", "gpu.model=H100"}, []string{"eu-2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.node("eu-1", gpus(l40s, 2), "jurisdiction=EU")
			w.node("eu-2", gpus(h100, 2), "jurisdiction=EU")
			w.node("ch-1", gpus(l40s, 2), "jurisdiction=CH")
			w.node("us-1", gpus(h800, 8), "jurisdiction=US")
			w.node("us-2", gpus(h800, 8), "jurisdiction=US")
			w.node("plain", gpus(l40s, 2))
			w.deploy("d", "deepseek-r1:32b", 6, constraints(tc.constraint...))
			p := w.schedule(opts())
			got, d := nodesOf(t, p, "d")
			if !slices.Equal(got, tc.want) {
				t.Fatalf("nodes %v, want %v", got, tc.want)
			}
			if len(tc.want) < 6 && (d.Status != StatusPartial || !strings.Contains(d.Reason, "fail")) {
				t.Fatalf("status %s %q, want partial naming the failed constraint", d.Status, d.Reason)
			}
		})
	}
}

func TestEUOnlyReasonNamesTheConstraintAndTheNeed(t *testing.T) {
	w := newWorld(t)
	w.node("eu-1", gpus(l40s, 1), "jurisdiction=EU")
	w.node("us-1", gpus(h800, 8), "jurisdiction=US")
	w.deploy("d", "qwen2.5:72b", 1, constraints("jurisdiction=EU"))
	p := w.schedule(opts())
	_, d := nodesOf(t, p, "d")
	want := "0 of 1 replicas placed: no ready node with jurisdiction=EU has 47.0 GiB of VRAM free for qwen2.5:72b (of 2 nodes: 1 short of VRAM, 1 fail jurisdiction=EU)"
	if d.Status != StatusUnplaceable || d.Reason != want {
		t.Fatalf("got %s %q\nwant %q", d.Status, d.Reason, want)
	}
}

func TestSpreadByZone(t *testing.T) {
	cases := []struct {
		name   string
		spread string
		want   []string
	}{
		{"bin-pack alone fills zone a", "", []string{"a-1", "a-2"}},
		{"spread puts one in each zone", "zone", []string{"a-1", "b-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.node("a-1", gpus(l40s, 1), "zone=a")
			w.node("a-2", gpus(l40s, 1), "zone=a")
			w.node("b-1", gpus(h800, 8), "zone=b")
			w.deploy("d", "deepseek-r1:14b", 2, spreadBy(tc.spread))
			p := w.schedule(opts())
			if got, _ := nodesOf(t, p, "d"); !slices.Equal(got, tc.want) {
				t.Fatalf("nodes %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPrefersTheNodeWithTheModelOnDisk(t *testing.T) {
	cases := []struct {
		name  string
		disk  []string
		model string
		want  string
	}{
		{"nothing on disk: first node", nil, "deepseek-r1:70b", "n1"},
		{"exact name", []string{"deepseek-r1:70b"}, "deepseek-r1:70b", "n2"},
		{"another name of the same model", []string{"registry.ollama.ai/library/deepseek-r1:8b"}, "deepseek-r1", "n2"},
		{"another model", []string{"llama3.1:70b"}, "deepseek-r1:70b", "n1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.node("n1", gpus(h100, 2))
			w.node("n2", gpus(h100, 2))
			if tc.disk != nil {
				w.onDisk("n2", tc.disk...)
			}
			w.deploy("d", tc.model, 1)
			p := w.schedule(opts())
			if got, _ := nodesOf(t, p, "d"); !slices.Equal(got, []string{tc.want}) {
				t.Fatalf("nodes %v, want %s", got, tc.want)
			}
		})
	}
}

func TestScaleDownRemovesTheCheapestReplicas(t *testing.T) {
	cases := []struct {
		name     string
		replicas int
		want     []string
	}{
		{"not ready goes first", 2, []string{"a", "c"}},
		{"then the most loaded node", 1, []string{"a"}},
		{"scale to zero", 0, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			for _, id := range []string{"a", "b", "c"} {
				w.node(id, gpus(h100, 1))
			}
			w.deploy("d", "llama3.1:8b", 3)
			w.deploy("filler", "qwen2.5:32b", 1)
			w.place("d", state.PlacementReady, "a", "c")
			w.place("d", state.PlacementPulling, "b")
			w.place("filler", state.PlacementReady, "c")
			w.deploy("d", "llama3.1:8b", tc.replicas)
			p := w.schedule(opts())
			got, d := nodesOf(t, p, "d")
			if !slices.Equal(got, tc.want) || d.Status != StatusOK {
				t.Fatalf("nodes %v (%s), want %v", got, d.Status, tc.want)
			}
			for _, r := range p.Removals {
				if r.Cause != CauseScaleDown {
					t.Fatalf("removal %+v, want scale-down", r)
				}
			}
			w.commit(p, state.PlacementReady)
			if again := w.schedule(opts()); again.Changes() != 0 {
				t.Fatalf("second run changes %d things", again.Changes())
			}
		})
	}
}

func TestModelChangeThatNoLongerFitsMoves(t *testing.T) {
	w := newWorld(t)
	w.node("small", gpus(l40s, 1))
	w.node("big", gpus(h100, 1))
	w.deploy("d", "llama3.1:8b", 1)
	w.place("d", state.PlacementReady, "small")
	w.deploy("d", "qwen2.5:72b", 1)
	p := w.schedule(opts())
	if got := actions(t, p, "d"); got["big"] != ActionPlace || len(got) != 1 {
		t.Fatalf("actions %v, want the replica moved to big", got)
	}
	if len(p.Removals) != 1 || p.Removals[0].Cause != CauseInfeasible {
		t.Fatalf("removals %+v, want one infeasible", p.Removals)
	}
}
