package api

import (
	"math"
	"strings"
	"testing"

	"github.com/sovra/sovra/cluster/state"
)

// energyState is a state in which node gpu-1 served the deployment
// "chat" (llama3.3:70b) to two keys in one hour: key k1 800 completion
// tokens, k2 400, and 300 more tokens to requests without a key; its GPUs
// spent 15,000 J (3,000 J of it estimated) on those 1,500 tokens. Node
// gpu-2 served qwen2.5:7b, asked for by its tag, with 600 J measured for
// 200 tokens, all to k1.
func energyState(t *testing.T) *state.State {
	t.Helper()
	s := state.New()
	apply := func(index uint64, typ state.Type, body any) {
		e, err := state.Encode(state.Command{Type: typ, Flags: state.FlagIgnorable, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		if out := s.Apply(index, e); out.Err() != nil {
			t.Fatal(out.Err())
		}
	}
	const hour = 1_700_000_000 / 3600 * 3600
	apply(1, state.TypePutDeployment, state.PutDeployment{Deployment: state.Deployment{Name: "chat", Model: "Llama3.3:70B", Replicas: 1}, Create: true})
	apply(2, state.TypeRecordUsage, state.RecordUsage{Node: "gpu-1", Batch: 1, Buckets: []state.UsageTotal{
		{Start: hour, Hours: 1, Key: "k1", Model: "chat", Node: "gpu-1", Requests: 4, PromptTokens: 100, CompletionTokens: 800},
		{Start: hour, Hours: 1, Key: "k2", Model: "chat", Node: "gpu-1", Requests: 2, PromptTokens: 50, CompletionTokens: 400},
		{Start: hour, Hours: 1, Key: "k1", Model: "qwen2.5:7b", Node: "gpu-2", Requests: 1, PromptTokens: 10, CompletionTokens: 200},
	}})
	apply(3, state.TypeRecordEnergy, state.RecordEnergy{Node: "gpu-1", Batch: 1, Buckets: []state.EnergyTotal{
		{Start: hour, Hours: 1, Model: "llama3.3:70b", Node: "gpu-1", MilliJoules: 15_000_000, EstimatedMilliJoules: 3_000_000, OutputTokens: 1500},
	}})
	apply(4, state.TypeRecordEnergy, state.RecordEnergy{Node: "gpu-2", Batch: 1, Buckets: []state.EnergyTotal{
		{Start: hour, Hours: 1, Model: "qwen2.5:7b", Node: "gpu-2", MilliJoules: 600_000, OutputTokens: 200},
	}})
	return s
}

// report groups the state's usage as GET /admin/v1/usage would.
func report(s *state.State, by ...string) []*usageRow {
	q := usageQuery{by: map[string]bool{}}
	for _, b := range by {
		q.by[b] = true
	}
	return q.group(s.UsageList(0, 0), readUsageEnergy(s, 0, 0))
}

type energyRow struct {
	key, model, node string
	joules, per1k    float64
	estimated        bool
	requests         int64
}

func TestUsageRowsTakeTheirEnergy(t *testing.T) {
	s := energyState(t)
	tests := []struct {
		by   []string
		want []energyRow
	}{
		{[]string{"key", "model", "node"}, []energyRow{
			// the 300 tokens no key accounts for, under the tag
			{"", "llama3.3:70b", "gpu-1", 3000, 10000, true, 0},
			{"k1", "chat", "gpu-1", 8000, 10000, true, 4},
			{"k1", "qwen2.5:7b", "gpu-2", 600, 3000, false, 1},
			{"k2", "chat", "gpu-1", 4000, 10000, true, 2},
		}},
		{[]string{"key"}, []energyRow{
			{"", "", "", 3000, 10000, true, 0},
			{"k1", "", "", 8600, 8600.0 / 1000 * 1000, true, 5},
			{"k2", "", "", 4000, 10000, true, 2},
		}},
		{[]string{"node"}, []energyRow{
			{"", "", "gpu-1", 15000, 10000, true, 6},
			{"", "", "gpu-2", 600, 3000, false, 1},
		}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.by, ","), func(t *testing.T) {
			rows := report(s, tc.by...)
			if len(rows) != len(tc.want) {
				t.Fatalf("%d rows, want %d: %+v", len(rows), len(tc.want), rows)
			}
			for i, w := range tc.want {
				r := rows[i]
				if r.Key != w.key || r.Model != w.model || r.Node != w.node || r.Requests != w.requests ||
					math.Abs(r.EnergyJoules-w.joules) > 1e-6 || math.Abs(r.JoulesPer1kTokens-w.per1k) > 1e-6 || r.EnergyEstimated != w.estimated {
					t.Errorf("row %d: %+v\nwant %+v", i, *r, w)
				}
			}
		})
	}
}

// TestUsageEnergyNeverExceedsTheBucket: when the keys' usage counts more
// tokens than the node did (an hour's requests recorded in the next hour
// by the node), the keys share the bucket's energy and take no more.
func TestUsageEnergyNeverExceedsTheBucket(t *testing.T) {
	s := energyState(t)
	for _, e := range s.Energy {
		if e.Node == "gpu-1" {
			e.OutputTokens = 1000 // fewer than the 1,200 the keys' usage holds
		}
	}
	var total float64
	for _, r := range report(s, "key", "model", "node") {
		if r.Node == "gpu-1" {
			total += r.EnergyJoules
			if r.Key == "" {
				t.Errorf("a row without a key: %+v", *r)
			}
		}
	}
	if math.Abs(total-15000) > 1e-6 {
		t.Fatalf("%v J shared out, want 15000", total)
	}
}

func TestUsageCSVHasEnergy(t *testing.T) {
	out := usageCSV(report(energyState(t), "node"))
	want := "node,requests,errors,prompt_tokens,completion_tokens,ttft_ms_avg,energy_joules,energy_estimated,joules_per_1k_tokens\n" +
		",,gpu-1,6,0,150,1200,0.0,15000.000,true,10000.0\n" +
		",,gpu-2,1,0,10,200,0.0,600.000,false,3000.0\n"
	if !strings.HasSuffix(out, want) || !strings.HasPrefix(out, "key,model,") {
		t.Fatalf("csv:\n%s\nwant its end:\n%s", out, want)
	}
	empty := usageCSV(report(state.New(), "node"))
	if strings.Count(empty, "\n") != 1 {
		t.Fatalf("empty report:\n%s", empty)
	}
	noEnergy := usageCSV([]*usageRow{{Key: "k", Requests: 1}})
	if !strings.HasSuffix(noEnergy, "k,,,1,0,0,0,0.0,,,\n") {
		t.Fatalf("a row without energy:\n%s", noEnergy)
	}
}
