package energy

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.uber.org/goleak"

	"github.com/sovra/sovra/cluster/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// h100Sampler is a sampler over the recorded 8xH100 host, with a
// 70B model laid out over GPUs 6 and 7 and a 7B model on GPU 7.
func h100Sampler(t *testing.T, outputs ...string) (*Sampler, *clock, *script) {
	t.Helper()
	clk := &clock{now: t0}
	sc := &script{t: t, outputs: outputs}
	s := New(Config{Node: "gpu-1", Runner: sc.run, Now: clk.Now,
		Layout: func() map[string][]int { return map[string][]int{"llama3.3:70b": {6, 7}, "Qwen2.5:7B": {7}} }})
	return s, clk, sc
}

func mustSample(t *testing.T, s *Sampler) {
	t.Helper()
	if err := s.Sample(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestSamplerJoulesPer1k measures the recorded 8xH100 host over 15 s in
// which the 70B model produced 1,500 tokens and the 7B model 500, and
// checks the figures the node reports for both.
func TestSamplerJoulesPer1k(t *testing.T) {
	s, clk, _ := h100Sampler(t, "power_h100_80gb_hbm3_8x_t0.csv", "power_h100_80gb_hbm3_8x_t1.csv")
	mustSample(t, s)
	s.AddTokens("Llama3.3:70B", 1500) // counted under the normal form of the tag
	s.AddTokens("qwen2.5:7b", 500)
	clk.Add(step)
	mustSample(t, s)

	eff := s.Efficiency()
	// 70B: all of GPU 6 (9,000 J) and 3/4 of GPU 7 (4,500 J) for 1,500 tokens.
	// 7B: 1/4 of GPU 7 (1,500 J) for 500 tokens.
	for model, want := range map[string]float64{"llama3.3:70b": 9000, "qwen2.5:7b": 3000} {
		if got := eff[model].JoulesPer1k(); !near(got, want) {
			t.Errorf("%s: %v J per 1k tokens, want %v", model, got, want)
		}
	}
	checkSeries(t, s, map[string]float64{
		`sovra_energy_joules_total{model="llama3.3:70b",node="gpu-1",source="counter"}`: 13500,
		`sovra_energy_joules_total{model="qwen2.5:7b",node="gpu-1",source="counter"}`:   1500,
		`sovra_energy_output_tokens_total{model="llama3.3:70b",node="gpu-1"}`:           1500,
		`sovra_energy_idle_joules_total{gpu="0",node="gpu-1",source="counter"}`:         1050,
		`sovra_energy_idle_joules_total{gpu="5",node="gpu-1",source="counter"}`:         1078.5,
		`sovra_gpu_energy_joules_total{gpu="6",node="gpu-1",source="counter"}`:          9000,
		`sovra_gpu_energy_joules_total{gpu="7",node="gpu-1",source="counter"}`:          6000,
		`sovra_energy_joules_per_1k_output_tokens{model="llama3.3:70b",node="gpu-1"}`:   9000,
		`sovra_energy_joules_per_1k_output_tokens{model="qwen2.5:7b",node="gpu-1"}`:     3000,
		`sovra_energy_estimated_ratio{model="llama3.3:70b",node="gpu-1"}`:               0,
		`sovra_output_tokens_total{model="llama3.3:70b",node="gpu-1"}`:                  1500,
		`sovra_output_tokens_total{model="qwen2.5:7b",node="gpu-1"}`:                    500,
	})
	mfs, err := testutilRegistry(s).Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

// checkSeries compares some series of the sampler's metrics, each
// written as name{labels in order}.
func checkSeries(t *testing.T, s *Sampler, want map[string]float64) {
	t.Helper()
	got := series(t, s)
	for k, v := range want {
		g, ok := got[k]
		if !ok || !near(g, v) {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// series gathers the sampler's metrics as name{labels} -> value.
func series(t *testing.T, s *Sampler) map[string]float64 {
	t.Helper()
	r := testutilRegistry(s)
	mfs, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

// TestSamplerEstimates: on the placeholder host, energy found from rated
// power and utilisation is labelled an estimate all the way to the state.
func TestSamplerEstimates(t *testing.T) {
	clk := &clock{now: t0}
	sc := &script{t: t, outputs: []string{"power_na_t0.csv", "power_na_t1.csv"}}
	s := New(Config{Node: "n1", Runner: sc.run, Now: clk.Now,
		GPUNames: func() map[int]string {
			return map[int]string{0: "Tesla P100-PCIE-16GB", 1: "NVIDIA L40S", 2: "NVIDIA L40S"}
		},
		Layout: func() map[string][]int {
			return map[string][]int{"p:latest": {0}, "l:latest": {1, 2}, "mig:latest": {3}}
		}})
	mustSample(t, s)
	s.AddTokens("p", 1000)
	s.AddTokens("l", 1000)
	s.AddTokens("mig", 1000)
	clk.Add(step)
	mustSample(t, s)
	checkSeries(t, s, map[string]float64{
		`sovra_energy_joules_total{model="p:latest",node="n1",source="power"}`:    (250.48 + 262.10) / 2 * 15,
		`sovra_energy_joules_total{model="l:latest",node="n1",source="estimate"}`: 2625 + 2100,
		`sovra_energy_estimated_ratio{model="l:latest",node="n1"}`:                1,
		`sovra_energy_estimated_ratio{model="p:latest",node="n1"}`:                0,
		`sovra_output_tokens_total{model="mig:latest",node="n1"}`:                 1000,
	})
	got := series(t, s)
	if _, ok := got[`sovra_energy_output_tokens_total{model="mig:latest",node="n1"}`]; ok {
		t.Error("the tokens of a model on an unmeasured GPU were counted as measured")
	}
	st := flushAll(t, s)
	b := st.Energy[state.EnergyKey(&state.EnergyTotal{Start: t0.Unix() / 3600 * 3600, Hours: 1, Model: "l:latest", Node: "n1"})]
	if b == nil || b.MilliJoules != 4725000 || b.EstimatedMilliJoules != 4725000 || b.OutputTokens != 1000 {
		t.Fatalf("state bucket %+v, want 4725000 mJ, all estimated, 1000 tokens", b)
	}
}

// TestSamplerWindow: the gauges cover the last Window only.
func TestSamplerWindow(t *testing.T) {
	clk := &clock{now: t0}
	t1 := "power_h100_80gb_hbm3_8x_t1.csv"
	sc := &script{t: t, outputs: []string{"power_h100_80gb_hbm3_8x_t0.csv", t1, t1, t1}}
	s := New(Config{Node: "n1", Runner: sc.run, Now: clk.Now, Window: 20 * step / 15,
		Layout: func() map[string][]int { return map[string][]int{"m:latest": {6}} }})
	mustSample(t, s)
	s.AddTokens("m", 900)
	clk.Add(step)
	mustSample(t, s) // 9,000 J for 900 tokens
	clk.Add(step)
	mustSample(t, s) // no tokens, no energy: the entry at 15 s is still in the window
	if got := s.Efficiency()["m:latest"].JoulesPer1k(); !near(got, 10000) {
		t.Fatalf("%v J per 1k tokens, want 10000", got)
	}
	clk.Add(step)
	mustSample(t, s) // 45 s: the entry at 15 s is out of the window
	if eff := s.Efficiency(); len(eff) != 0 {
		t.Fatalf("window still holds %+v", eff)
	}
	if _, ok := series(t, s)[`sovra_energy_joules_per_1k_output_tokens{model="m:latest",node="n1"}`]; ok {
		t.Fatal("gauge still reported")
	}
}

// TestSamplerFailedReadKeepsTokens: after a failed read, the tokens wait
// for the next reading, whose counter covers both intervals.
func TestSamplerFailedReadKeepsTokens(t *testing.T) {
	s, clk, _ := h100Sampler(t, "power_h100_80gb_hbm3_8x_t0.csv", "!", "power_h100_80gb_hbm3_8x_t1.csv")
	mustSample(t, s)
	s.AddTokens("llama3.3:70b", 1000)
	clk.Add(step)
	if err := s.Sample(context.Background()); !errors.Is(err, errDriver) {
		t.Fatalf("error %v, want the driver's", err)
	}
	s.AddTokens("llama3.3:70b", 500)
	clk.Add(step)
	mustSample(t, s)
	if got := s.Efficiency()["llama3.3:70b"]; got.Tokens != 1500 || !near(got.Joules, 15000) {
		t.Fatalf("%+v, want 15000 J for 1500 tokens", got)
	}
}

// TestSamplerWithoutNvidiaSMI: a node without nvidia-smi counts output
// tokens and measures nothing.
func TestSamplerWithoutNvidiaSMI(t *testing.T) {
	s := New(Config{Node: "cpu", Runner: func(context.Context, string, ...string) ([]byte, error) {
		return nil, &exec.Error{Name: "nvidia-smi", Err: exec.ErrNotFound}
	}})
	s.AddTokens("m", 7)
	mustSample(t, s)
	got := series(t, s)
	if len(got) != 1 || got[`sovra_output_tokens_total{model="m:latest",node="cpu"}`] != 7 {
		t.Fatalf("series %v", got)
	}
	if st := flushAll(t, s); len(st.Energy) != 0 {
		t.Fatalf("energy recorded: %v", st.Energy)
	}
}

func TestSamplerBoundsModels(t *testing.T) {
	s := New(Config{})
	for i := range maxModels + 5 {
		s.AddTokens(fmt.Sprintf("m%d", i), 1)
	}
	s.AddTokens("m0", 1) // known: keeps its name
	s.AddTokens("bad name!", 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.led.output) != maxModels+1 || s.led.output[OtherModel] != 5 || s.led.output["m0:latest"] != 2 {
		t.Fatalf("%d models, %d other, %d m0", len(s.led.output), s.led.output[OtherModel], s.led.output["m0:latest"])
	}
}

// TestSamplerRun drives Run with ticks and checks it samples at once and
// on every tick, and reports failures.
func TestSamplerRun(t *testing.T) {
	s, clk, sc := h100Sampler(t, "power_h100_80gb_hbm3_8x_t0.csv", "!", "power_h100_80gb_hbm3_8x_t1.csv")
	sc.calls = make(chan int, 3)
	errs := make(chan error, 3)
	s.cfg.OnError = func(err error) { errs <- err }
	tc := make(chan time.Time)
	s.cfg.Ticks = tc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-sc.calls // the first sample, at once
	for i := range 2 {
		clk.Add(step)
		tc <- clk.Now()
		<-sc.calls
		if i == 0 {
			// The first sample has been booked (Run samples one at a
			// time) and the failed one books nothing.
			s.AddTokens("llama3.3:70b", 1500)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || !errors.Is(<-errs, errDriver) {
		t.Fatal("the failed sample was not reported once")
	}
	if got := s.Efficiency()["llama3.3:70b"]; got.Tokens != 1500 || !near(got.Joules, 15000) {
		t.Fatalf("%+v, want 15000 J for 1500 tokens", got)
	}
}
