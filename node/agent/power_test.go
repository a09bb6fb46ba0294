package agent_test

import (
	"context"
	"errors"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sovra/sovra/node/agent"
)

// pw is a reading with every figure known.
func pw(index int, uuid string, watts, energyMJ, util, limit float64) agent.PowerReading {
	return agent.PowerReading{Index: index, UUID: uuid, Watts: watts, HasWatts: true, EnergyMJ: energyMJ, HasEnergy: true,
		Util: util, HasUtil: true, LimitWatts: limit, HasLimit: true}
}

func TestParsePowerRecorded(t *testing.T) {
	tests := []struct {
		file string
		n    int
		// spot checks, by index
		want map[int]agent.PowerReading
	}{
		{file: "power_h100_80gb_hbm3_8x_t0.csv", n: 8, want: map[int]agent.PowerReading{
			0: pw(0, "GPU-b5f2d6a4-ebf9-f5a9-8d8f-6e49e0c4f0d8", 69.87, 183112456013, 0, 700),
			6: pw(6, "GPU-391fc3fc-d281-364a-d690-ccbb0208032c", 587.41, 392781553904, 91, 700),
		}},
		{file: "power_h800_8x_t1.csv", n: 8, want: map[int]agent.PowerReading{
			3: pw(3, "GPU-06b72b2d-f4a9-95cb-674e-52b83cb80449", 380.04, 361211638462, 72, 500),
		}},
		{file: "power_na_t0.csv", n: 4, want: map[int]agent.PowerReading{
			0: {Index: 0, UUID: "GPU-5e0b6a3f-2c1d-4f7e-9a8b-0d3c2e1f4a5b", Watts: 250.48, HasWatts: true, Util: 71, HasUtil: true,
				LimitWatts: 250, HasLimit: true},
			1: {Index: 1, UUID: "GPU-8a7b6c5d-4e3f-2a1b-0c9d-8e7f6a5b4c3d", Util: 50, HasUtil: true, LimitWatts: 350, HasLimit: true},
			2: {Index: 2, UUID: "GPU-1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718", Util: 40, HasUtil: true},
			3: {Index: 3},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := agent.ParsePower(readTestdata(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.n {
				t.Fatalf("%d GPUs, want %d", len(got), tc.n)
			}
			for i, r := range got {
				if r.Index != i {
					t.Fatalf("GPU %d at position %d", r.Index, i)
				}
			}
			for i, want := range tc.want {
				if !reflect.DeepEqual(got[i], want) {
					t.Errorf("GPU %d:\n got %+v\nwant %+v", i, got[i], want)
				}
			}
		})
	}
}

func TestParsePowerEdgeCases(t *testing.T) {
	want := []agent.PowerReading{
		pw(0, "GPU-a", 61.5, 1000, 3, 450),
		pw(1, "GPU-b", 300, 2000, 100, 450),
	}
	tests := []struct {
		name string
		out  string
		want []agent.PowerReading
	}{
		{"units printed", "0, GPU-a, 61.50 W, 1000 mJ, 3 %, 450.00 W\n1, GPU-b, 300 W, 2000 mJ, 100 %, 450 W\n", want},
		{"CRLF, BOM, quotes, blank lines, out of order",
			"\ufeff\r\n1, \"GPU-b\", 300, 2000, 100, 450\r\n\r\n0, GPU-a, 61.5, 1000, 3, 450\r\n", want},
		{"nothing", "\n\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agent.ParsePower([]byte(tc.out))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParsePowerErrors(t *testing.T) {
	tests := []struct {
		name, out string
		line      int
		why       string
	}{
		{"driver failure", string(readTestdata(t, "driver_failed.txt")), 1, "6 comma-separated fields"},
		{"a GPU lost", string(readTestdata(t, "power_gpu_lost.txt")), 1, "6 comma-separated fields"},
		{"inventory query's columns", string(readTestdata(t, "h200_1x.csv")), 1, "uuid"},
		{"negative power", "0, GPU-a, -3, 1, 1, 1\n", 1, "power.draw"},
		{"words for energy", "0, GPU-a, 3, lots, 1, 1\n", 1, "total_energy_consumption"},
		{"utilisation over 100", "0, GPU-a, 3, 1, 101, 1\n", 1, "over 100"},
		{"no index", "[N/A], GPU-a, 3, 1, 1, 1\n", 1, "index"},
		{"repeated index", "0, GPU-a, 3, 1, 1, 1\n\n0, GPU-b, 3, 1, 1, 1\n", 3, "repeats line 1"},
		{"unbalanced quote", "0, \"GPU-a, 3, 1, 1, 1\n", 1, "quote"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agent.ParsePower([]byte(tc.out))
			var pe *agent.ParseError
			if !errors.As(err, &pe) || !errors.Is(err, agent.ErrMalformedOutput) {
				t.Fatalf("error %v, want a *ParseError", err)
			}
			if pe.Line != tc.line || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("error %v, want line %d saying %q", err, tc.line, tc.why)
			}
		})
	}
}

func TestReadPower(t *testing.T) {
	errDriver := errors.New("exit status 9")
	notFound := &exec.Error{Name: "nvidia-smi", Err: exec.ErrNotFound}
	tests := []struct {
		name    string
		runner  *fakeRunner
		n       int
		wantErr error
	}{
		{name: "no nvidia-smi", runner: &fakeRunner{err: notFound}},
		{name: "driver failure", runner: &fakeRunner{out: readTestdata(t, "driver_failed.txt"), err: errDriver}, wantErr: errDriver},
		{name: "malformed", runner: &fakeRunner{out: readTestdata(t, "power_gpu_lost.txt")}, wantErr: agent.ErrMalformedOutput},
		{name: "read", runner: &fakeRunner{out: readTestdata(t, "power_h800_8x_t0.csv")}, n: 8},
	}
	wantCall := []string{"nvidia-smi",
		"--query-gpu=index,uuid,power.draw,total_energy_consumption,utilization.gpu,power.limit", "--format=csv,noheader,nounits"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agent.ReadPower(context.Background(), tc.runner.run)
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if len(got) != tc.n {
				t.Fatalf("%d readings, want %d", len(got), tc.n)
			}
			if len(tc.runner.calls) != 1 || !slices.Equal(tc.runner.calls[0], wantCall) {
				t.Fatalf("calls %q, want %q", tc.runner.calls, wantCall)
			}
		})
	}
}
