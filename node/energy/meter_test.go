package energy

import (
	"testing"
	"time"

	"github.com/sovra/sovra/node/agent"
)

// TestMeterRecorded steps a meter over two recorded readings 15 s apart
// and checks each GPU's energy and source.
func TestMeterRecorded(t *testing.T) {
	naNames := map[int]string{0: "Tesla P100-PCIE-16GB", 1: "NVIDIA L40S", 2: "NVIDIA L40S", 3: "NVIDIA A100-SXM4-80GB"}
	tests := []struct {
		name  string
		host  string
		names map[int]string
		want  map[int]GPUEnergy // by index; GPUs not listed give nothing
	}{
		{name: "8xH100, energy counters", host: "power_h100_80gb_hbm3_8x", want: map[int]GPUEnergy{
			0: {0, 1050, SourceCounter}, 1: {1, 1068, SourceCounter}, 2: {2, 1038, SourceCounter}, 3: {3, 1054.5, SourceCounter},
			4: {4, 1041, SourceCounter}, 5: {5, 1078.5, SourceCounter}, 6: {6, 9000, SourceCounter}, 7: {7, 6000, SourceCounter},
		}},
		{name: "8xH800, energy counters", host: "power_h800_8x", want: map[int]GPUEnergy{
			0: {0, 6960, SourceCounter}, 3: {3, 5640, SourceCounter}, 7: {7, 1126.5, SourceCounter},
		}},
		{name: "placeholders", host: "power_na", names: naNames, want: map[int]GPUEnergy{
			// power: the mean of 250.48 W and 262.10 W over 15 s
			0: {0, (250.48 + 262.10) / 2 * 15, SourcePower},
			// estimate: the 350 W cap at 50% for 15 s
			1: {1, 350 * 0.5 * 15, SourceEstimate},
			// estimate: no cap, the L40S's rated 350 W at 40% for 15 s
			2: {2, 350 * 0.4 * 15, SourceEstimate},
			// GPU 3 gives nothing to measure by
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Meter
			if got := m.Step(t0, readings(t, tc.host+"_t0.csv"), tc.names); len(got) != 0 {
				t.Fatalf("first step gave %+v, want nothing", got)
			}
			got := m.Step(t0.Add(step), readings(t, tc.host+"_t1.csv"), tc.names)
			seen := map[int]bool{}
			for _, g := range got {
				seen[g.Index] = true
				want, ok := tc.want[g.Index]
				if !ok && tc.name == "placeholders" {
					t.Errorf("GPU %d gave %+v, want nothing", g.Index, g)
				}
				if ok && (!near(g.Joules, want.Joules) || g.Source != want.Source) {
					t.Errorf("GPU %d: %v J by %s, want %v J by %s", g.Index, g.Joules, g.Source, want.Joules, want.Source)
				}
			}
			for i := range tc.want {
				if !seen[i] {
					t.Errorf("GPU %d gave nothing", i)
				}
			}
		})
	}
}

// TestMeterRules covers the cases recorded outputs do not: counter
// resets, changed GPUs, gaps, a clock that does not move, and which
// figure wins when several are known.
func TestMeterRules(t *testing.T) {
	full := func(uuid string, watts, mj, util, limit float64) agent.PowerReading {
		return agent.PowerReading{UUID: uuid, Watts: watts, HasWatts: true, EnergyMJ: mj, HasEnergy: true,
			Util: util, HasUtil: true, LimitWatts: limit, HasLimit: true}
	}
	utilOnly := func(util float64) agent.PowerReading {
		return agent.PowerReading{UUID: "GPU-a", Util: util, HasUtil: true}
	}
	tests := []struct {
		name       string
		prev, cur  agent.PowerReading
		dt         time.Duration
		gpuName    string
		wantJoules float64
		wantSource Source // "": nothing
	}{
		{"counter wins over power", full("GPU-a", 100, 1_000_000, 50, 700), full("GPU-a", 300, 1_003_000, 50, 700), 10 * time.Second, "", 3, SourceCounter},
		{"counter reset falls back to power", full("GPU-a", 100, 9_000_000, 50, 700), full("GPU-a", 300, 5_000, 50, 700), 10 * time.Second, "", 2000, SourcePower},
		{"power without a previous power", agent.PowerReading{UUID: "GPU-a"}, agent.PowerReading{UUID: "GPU-a", Watts: 200, HasWatts: true}, 10 * time.Second, "", 2000, SourcePower},
		{"estimate from the cap, utilisation averaged", utilOnly(20), agent.PowerReading{UUID: "GPU-a", Util: 60, HasUtil: true, LimitWatts: 500, HasLimit: true}, 10 * time.Second, "", 500 * 0.4 * 10, SourceEstimate},
		{"estimate from the rated power", utilOnly(100), utilOnly(100), 10 * time.Second, "NVIDIA H200", 7000, SourceEstimate},
		{"a zero cap is no cap", utilOnly(100), agent.PowerReading{UUID: "GPU-a", Util: 100, HasUtil: true, HasLimit: true}, 10 * time.Second, "NVIDIA H200", 7000, SourceEstimate},
		{"no rated power for the board", utilOnly(100), utilOnly(100), 10 * time.Second, "Tesla T4", 0, ""},
		{"a counter over a long gap", full("GPU-a", 100, 0, 0, 700), full("GPU-a", 100, 6_000_000, 0, 700), time.Hour, "", 6000, SourceCounter},
		{"power over a long gap", agent.PowerReading{UUID: "GPU-a", Watts: 100, HasWatts: true}, agent.PowerReading{UUID: "GPU-a", Watts: 100, HasWatts: true}, time.Hour, "", 0, ""},
		{"an estimate over a long gap", utilOnly(100), utilOnly(100), time.Hour, "NVIDIA H200", 0, ""},
		{"the clock did not move", full("GPU-a", 100, 0, 0, 700), full("GPU-a", 100, 1000, 0, 700), 0, "", 0, ""},
		{"another GPU at the index", full("GPU-a", 100, 0, 0, 700), full("GPU-b", 100, 1000, 0, 700), 10 * time.Second, "", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Meter{MaxGap: time.Minute}
			names := map[int]string{0: tc.gpuName}
			m.Step(t0, []agent.PowerReading{tc.prev}, names)
			got := m.Step(t0.Add(tc.dt), []agent.PowerReading{tc.cur}, names)
			if tc.wantSource == "" {
				if len(got) != 0 {
					t.Fatalf("got %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 || !near(got[0].Joules, tc.wantJoules) || got[0].Source != tc.wantSource {
				t.Fatalf("got %+v, want %v J by %s", got, tc.wantJoules, tc.wantSource)
			}
		})
	}
}

// TestMeterMissedReading: a GPU missing from a reading keeps its last
// one, so its counter covers the missed interval next time.
func TestMeterMissedReading(t *testing.T) {
	var m Meter
	a := agent.PowerReading{Index: 0, UUID: "GPU-a", EnergyMJ: 1000, HasEnergy: true}
	b := agent.PowerReading{Index: 1, UUID: "GPU-b", EnergyMJ: 1000, HasEnergy: true}
	m.Step(t0, []agent.PowerReading{a, b}, nil)
	a.EnergyMJ = 3000
	m.Step(t0.Add(step), []agent.PowerReading{a}, nil) // GPU 1 missing
	a.EnergyMJ, b.EnergyMJ = 4000, 7000
	got := m.Step(t0.Add(2*step), []agent.PowerReading{a, b}, nil)
	if len(got) != 2 || !near(got[0].Joules, 1) || !near(got[1].Joules, 6) {
		t.Fatalf("got %+v, want 1 J and 6 J", got)
	}
}
