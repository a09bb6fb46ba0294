package energy

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sovra/sovra/cluster/state"
)

// testutilRegistry registers the sampler's collector alone.
func testutilRegistry(s *Sampler) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(s.Collector())
	return r
}

// fakeState applies commands to a state, losing the answers of the first
// `lose` of them after applying them.
type fakeState struct {
	s     *state.State
	index uint64
	lose  int
	cmds  int
}

func (f *fakeState) apply(_ context.Context, cmd state.Command) (state.Outcome, error) {
	e, err := state.Encode(cmd)
	if err != nil {
		return state.Outcome{}, err
	}
	f.index++
	f.cmds++
	out := f.s.Apply(f.index, e)
	if f.lose > 0 {
		f.lose--
		return state.Outcome{}, errors.New("answer lost")
	}
	return out, nil
}

// flushAll flushes the sampler's energy into a new state.
func flushAll(t *testing.T, s *Sampler) *state.State {
	t.Helper()
	f := &fakeState{s: state.New()}
	if err := s.Flush(context.Background(), f.apply); err != nil {
		t.Fatal(err)
	}
	return f.s
}

// TestFlushRetriesTheSameBatch: a batch whose answer was lost is sent
// again as it was, and the state counts it once; what was booked
// meanwhile goes in the next batch.
func TestFlushRetriesTheSameBatch(t *testing.T) {
	for _, lose := range []int{0, 2} {
		s, clk, _ := h100Sampler(t, "power_h100_80gb_hbm3_8x_t0.csv", "power_h100_80gb_hbm3_8x_t1.csv", "power_h100_80gb_hbm3_8x_t1.csv")
		f := &fakeState{s: state.New(), lose: lose}
		mustSample(t, s)
		s.AddTokens("llama3.3:70b", 1500)
		s.AddTokens("qwen2.5:7b", 500)
		clk.Add(step)
		mustSample(t, s)
		for range lose {
			if err := s.Flush(context.Background(), f.apply); err == nil {
				t.Fatal("no error")
			}
		}
		s.AddTokens("qwen2.5:7b", 100) // no energy in the next interval: counted as produced, booked with 0 J
		clk.Add(step)
		mustSample(t, s)
		for range 2 {
			if err := s.Flush(context.Background(), f.apply); err != nil {
				t.Fatal(err)
			}
		}
		batches := 1 // all booked before the first flush ...
		if lose > 0 {
			batches = 2 // ... or after the batch that was retried
		}
		if err := s.Flush(context.Background(), f.apply); err != nil || f.cmds != lose+batches {
			t.Fatalf("%d commands written (%v), want %d", f.cmds, err, lose+batches)
		}
		hour := t0.Unix() / 3600 * 3600
		want := map[string]state.EnergyTotal{
			"llama3.3:70b": {MilliJoules: 13_500_000, OutputTokens: 1500},
			"qwen2.5:7b":   {MilliJoules: 1_500_000, OutputTokens: 600},
		}
		for model, w := range want {
			b := f.s.Energy[state.EnergyKey(&state.EnergyTotal{Start: hour, Hours: 1, Model: model, Node: "gpu-1"})]
			if b == nil || b.MilliJoules != w.MilliJoules || b.OutputTokens != w.OutputTokens || b.EstimatedMilliJoules != 0 {
				t.Fatalf("lose %d, %s: %+v, want %+v", lose, model, b, w)
			}
		}
		if len(f.s.Energy) != 2 {
			t.Fatalf("buckets %v", f.s.Energy)
		}
	}
}
