package energy

import (
	"reflect"
	"testing"
)

// h100Interval is the energy of the recorded 8xH100 host over its 15 s:
// GPUs 0-5 idle (about 70 W each), 6 at 600 W, 7 at 400 W.
func h100Interval(t *testing.T) []GPUEnergy {
	t.Helper()
	var m Meter
	m.Step(t0, readings(t, "power_h100_80gb_hbm3_8x_t0.csv"), nil)
	return m.Step(t0.Add(step), readings(t, "power_h100_80gb_hbm3_8x_t1.csv"), nil)
}

func TestAttribute(t *testing.T) {
	h100 := h100Interval(t)
	const idleH100 = 1050 + 1068 + 1038 + 1054.5 + 1041 + 1078.5 // GPUs 0-5
	tests := []struct {
		name   string
		gpus   []GPUEnergy
		tokens map[string]int64
		layout map[string][]int
		// want: joules and tokens per model
		want       map[string]Share
		idle       float64
		unmeasured map[string]int64
	}{
		{
			name:   "one replica split over GPUs 6 and 7",
			gpus:   h100,
			tokens: map[string]int64{"llama3.3:70b": 1500},
			layout: map[string][]int{"llama3.3:70b": {6, 7}},
			want:   map[string]Share{"llama3.3:70b": {Joules: map[Source]float64{SourceCounter: 15000}, Tokens: 1500}},
			idle:   idleH100,
		},
		{
			name:   "two replicas share GPU 7 by their tokens",
			gpus:   h100,
			tokens: map[string]int64{"llama3.3:70b": 1500, "qwen2.5:7b": 500},
			layout: map[string][]int{"llama3.3:70b": {6, 7}, "qwen2.5:7b": {7}},
			want: map[string]Share{
				// all of GPU 6 (9000 J) and 1500/2000 of GPU 7 (6000 J)
				"llama3.3:70b": {Joules: map[Source]float64{SourceCounter: 9000 + 4500}, Tokens: 1500},
				"qwen2.5:7b":   {Joules: map[Source]float64{SourceCounter: 1500}, Tokens: 500},
			},
			idle: idleH100,
		},
		{
			name:   "a replica that produced nothing takes nothing",
			gpus:   h100,
			tokens: map[string]int64{"llama3.3:70b": 1500, "qwen2.5:7b": 0},
			layout: map[string][]int{"llama3.3:70b": {6, 7}, "qwen2.5:7b": {7}},
			want:   map[string]Share{"llama3.3:70b": {Joules: map[Source]float64{SourceCounter: 15000}, Tokens: 1500}},
			idle:   idleH100,
		},
		{
			name: "no tokens: everything idle",
			gpus: h100, tokens: map[string]int64{}, layout: map[string][]int{"llama3.3:70b": {6, 7}},
			want: map[string]Share{}, idle: idleH100 + 15000,
		},
		{
			name:   "a model without a layout is on every GPU",
			gpus:   []GPUEnergy{{0, 100, SourceCounter}, {1, 300, SourcePower}},
			tokens: map[string]int64{"a:latest": 10, "b:latest": 30},
			layout: map[string][]int{"b:latest": {1}},
			want: map[string]Share{
				"a:latest": {Joules: map[Source]float64{SourceCounter: 100, SourcePower: 75}, Tokens: 10},
				"b:latest": {Joules: map[Source]float64{SourcePower: 225}, Tokens: 30},
			},
		},
		{
			name:       "a model whose GPU was not measured",
			gpus:       []GPUEnergy{{0, 100, SourceEstimate}},
			tokens:     map[string]int64{"a:latest": 10, "b:latest": 30},
			layout:     map[string][]int{"a:latest": {0}, "b:latest": {1}},
			want:       map[string]Share{"a:latest": {Joules: map[Source]float64{SourceEstimate: 100}, Tokens: 10}},
			unmeasured: map[string]int64{"b:latest": 30},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iv := Attribute(tc.gpus, tc.tokens, tc.layout)
			if len(iv.Models) != len(tc.want) {
				t.Fatalf("models %v, want %v", iv.Models, tc.want)
			}
			for m, want := range tc.want {
				got := iv.Models[m]
				if got == nil || got.Tokens != want.Tokens || len(got.Joules) != len(want.Joules) {
					t.Fatalf("%s: %+v, want %+v", m, got, want)
				}
				for src, j := range want.Joules {
					if !near(got.Joules[src], j) {
						t.Errorf("%s by %s: %v J, want %v", m, src, got.Joules[src], j)
					}
				}
			}
			var idle float64
			for _, g := range iv.Idle {
				idle += g.Joules
			}
			if !near(idle, tc.idle) {
				t.Errorf("idle %v J, want %v", idle, tc.idle)
			}
			if !reflect.DeepEqual(iv.Unmeasured, tc.unmeasured) {
				t.Errorf("unmeasured %v, want %v", iv.Unmeasured, tc.unmeasured)
			}
		})
	}
}

// TestAttributeConservesEnergy: attributed and idle energy add up to what
// the GPUs used, whatever the tokens and layout.
func TestAttributeConservesEnergy(t *testing.T) {
	gpus := h100Interval(t)
	var total float64
	for _, g := range gpus {
		total += g.Joules
	}
	layouts := []map[string][]int{nil, {"a": {0}}, {"a": {6, 7}, "b": {7}, "c": {1, 2, 3}}, {"a": {9}}}
	tokens := []map[string]int64{{}, {"a": 1}, {"a": 7, "b": 3, "c": 1000}, {"b": 5}}
	for _, l := range layouts {
		for _, tk := range tokens {
			iv := Attribute(gpus, tk, l)
			var sum float64
			for _, sh := range iv.Models {
				sum += sh.Total()
			}
			for _, g := range iv.Idle {
				sum += g.Joules
			}
			if !near(sum, total) {
				t.Errorf("layout %v tokens %v: %v J accounted, %v J used", l, tk, sum, total)
			}
		}
	}
}
