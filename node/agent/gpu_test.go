package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/agent"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const mib = 1 << 20

// st is a GPU with known usage, sizes in MiB.
func st(index int, model, uuid string, total, used, free uint64) agent.GPUStatus {
	return agent.GPUStatus{
		GPU:       state.GPU{Index: index, Model: model, MemoryBytes: total * mib, UUID: uuid},
		UsedBytes: used * mib, FreeBytes: free * mib, UsageKnown: true,
	}
}

// noUsage is st with used and free memory unavailable.
func noUsage(index int, model, uuid string, total uint64) agent.GPUStatus {
	return agent.GPUStatus{GPU: state.GPU{Index: index, Model: model, MemoryBytes: total * mib, UUID: uuid}}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseNvidiaSMIRecorded(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []agent.GPUStatus
	}{
		{name: "8xH800", file: "h800_8x.csv", want: []agent.GPUStatus{
			st(0, "NVIDIA H800", "GPU-a92d91b0-dca9-7694-0894-e277504bd1a7", 81559, 61234, 19770),
			st(1, "NVIDIA H800", "GPU-d459c2fa-6f01-cb90-521a-653ba6874c94", 81559, 61234, 19770),
			st(2, "NVIDIA H800", "GPU-6418df48-7603-467b-dc47-344ef70a86ca", 81559, 61234, 19770),
			st(3, "NVIDIA H800", "GPU-06b72b2d-f4a9-95cb-674e-52b83cb80449", 81559, 61234, 19770),
			st(4, "NVIDIA H800", "GPU-73786475-2056-1915-1a1d-ee0e8956c3b7", 81559, 0, 81004),
			st(5, "NVIDIA H800", "GPU-816fa5b3-f690-7479-1fbb-dde1e4e0a879", 81559, 0, 81004),
			st(6, "NVIDIA H800", "GPU-ceca9416-609f-1443-f1fb-e5e3deae611c", 81559, 0, 81004),
			st(7, "NVIDIA H800", "GPU-509f503d-6e27-0aa1-a22b-65b2b3350109", 81559, 0, 81004),
		}},
		{name: "8xH100 80GB HBM3", file: "h100_80gb_hbm3_8x.csv", want: []agent.GPUStatus{
			st(0, "NVIDIA H100 80GB HBM3", "GPU-b5f2d6a4-ebf9-f5a9-8d8f-6e49e0c4f0d8", 81559, 0, 81004),
			st(1, "NVIDIA H100 80GB HBM3", "GPU-4c5ae76c-c459-dd84-20bf-b1626cd8d6bd", 81559, 0, 81004),
			st(2, "NVIDIA H100 80GB HBM3", "GPU-c80024b8-5683-05ec-51c1-b78d9ed68d94", 81559, 0, 81004),
			st(3, "NVIDIA H100 80GB HBM3", "GPU-d294f4c2-a8fc-02e0-a7ee-7bfc54bc3958", 81559, 0, 81004),
			st(4, "NVIDIA H100 80GB HBM3", "GPU-30665c63-953d-3c79-48e3-1fd576c39aa9", 81559, 0, 81004),
			st(5, "NVIDIA H100 80GB HBM3", "GPU-9f5748d9-fe15-a8ef-6022-400a33faff2c", 81559, 0, 81004),
			st(6, "NVIDIA H100 80GB HBM3", "GPU-391fc3fc-d281-364a-d690-ccbb0208032c", 81559, 47015, 33989),
			st(7, "NVIDIA H100 80GB HBM3", "GPU-7f4351e0-3f65-da22-6f0b-48c0e435a71a", 81559, 47015, 33989),
		}},
		{name: "4xA100-SXM4-80GB", file: "a100_sxm4_80gb_4x.csv", want: []agent.GPUStatus{
			st(0, "NVIDIA A100-SXM4-80GB", "GPU-877e3afa-b15d-aa7c-829e-1a6fed2c6286", 81920, 4, 81046),
			st(1, "NVIDIA A100-SXM4-80GB", "GPU-452383bb-213e-68bf-a932-b2aa0679d96c", 81920, 4, 81046),
			st(2, "NVIDIA A100-SXM4-80GB", "GPU-a73f62f3-8960-bdf1-e066-18bc9ef9e778", 81920, 4, 81046),
			st(3, "NVIDIA A100-SXM4-80GB", "GPU-5a51aedd-82f7-0208-7b95-df6eaf8f08c1", 81920, 4, 81046),
		}},
		{name: "2xL40S", file: "l40s_2x.csv", want: []agent.GPUStatus{
			st(0, "NVIDIA L40S", "GPU-f1e9eb38-cb93-4983-8136-35506669cd1a", 46068, 20311, 25278),
			st(1, "NVIDIA L40S", "GPU-9b5a2eae-c3dd-dd27-f985-bea3cd32dd61", 46068, 0, 45589),
		}},
		{name: "1xRTX 4090 with CRLF", file: "rtx4090_windows.csv", want: []agent.GPUStatus{
			st(0, "NVIDIA GeForce RTX 4090", "GPU-e264c13d-ab90-c134-567d-5bf16871f251", 24564, 1203, 22976),
		}},
		{name: "1xH200", file: "h200_1x.csv", want: []agent.GPUStatus{
			st(0, "NVIDIA H200", "GPU-7a54bad7-f8fe-b493-2487-239cc57c5ab6", 143771, 0, 143196),
		}},
		{name: "MIG and unavailable fields", file: "mig_na.csv", want: []agent.GPUStatus{
			noUsage(0, "NVIDIA A100-SXM4-40GB", "GPU-c1eef657-82b2-f828-6186-6cc4d60417b3", 40960),
			st(1, "NVIDIA A100-SXM4-40GB", "GPU-11237421-0c55-49ca-a2d0-3f9bce75b178", 40960, 0, 40337),
			noUsage(2, "NVIDIA A30", "GPU-ac9d34fb-abee-237d-e5a7-a38356fcadad", 0),
			st(3, "NVIDIA H100 80GB HBM3", "", 81559, 0, 81004),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := readTestdata(t, tc.file)
			got, err := agent.ParseNvidiaSMIStatus(out)
			if err != nil {
				t.Fatalf("ParseNvidiaSMIStatus: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("statuses:\ngot  %+v\nwant %+v", got, tc.want)
			}
			gpus, err := agent.ParseNvidiaSMI(out)
			if err != nil {
				t.Fatalf("ParseNvidiaSMI: %v", err)
			}
			if want := agent.GPUs(tc.want); !reflect.DeepEqual(gpus, want) {
				t.Fatalf("GPUs:\ngot  %+v\nwant %+v", gpus, want)
			}
		})
	}
}

func TestParseNvidiaSMIEdgeCases(t *testing.T) {
	const (
		u0 = "GPU-00000000-1111-2222-3333-444444444444"
		u1 = "GPU-55555555-6666-7777-8888-999999999999"
	)
	h800 := st(0, "NVIDIA H800", u0, 81559, 0, 81004)
	tests := []struct {
		name string
		out  string
		want []agent.GPUStatus
	}{
		{name: "empty output", out: "", want: nil},
		{name: "only blank lines", out: "\n  \r\n\n", want: nil},
		{name: "no trailing newline", out: "0, NVIDIA H800, " + u0 + ", 81559, 0, 81004", want: []agent.GPUStatus{h800}},
		{name: "blank lines and spaces", out: "\n   0 ,   NVIDIA H800  ,\t" + u0 + " , 81559,0 ,  81004   \n\n", want: []agent.GPUStatus{h800}},
		{name: "CRLF", out: "0, NVIDIA H800, " + u0 + ", 81559, 0, 81004\r\n\r\n", want: []agent.GPUStatus{h800}},
		{name: "byte-order mark", out: "\ufeff0, NVIDIA H800, " + u0 + ", 81559, 0, 81004\n", want: []agent.GPUStatus{h800}},
		{name: "units left in", out: "0, NVIDIA H800, " + u0 + ", 81559 MiB, 0 MiB, 81004 MiB\n", want: []agent.GPUStatus{h800}},
		{name: "quoted fields", out: `"0", "NVIDIA H800", "` + u0 + `", "81559", "0", "81004"` + "\n", want: []agent.GPUStatus{h800}},
		{
			name: "quoted name with comma and quote",
			out:  `0, "NVIDIA H800, ""rev 2""", ` + u0 + ", 81559, 0, 81004\n",
			want: []agent.GPUStatus{st(0, `NVIDIA H800, "rev 2"`, u0, 81559, 0, 81004)},
		},
		{
			name: "unquoted name with commas",
			out:  "0, NVIDIA H800, rev 2, lot 7, " + u0 + ", 81559, 0, 81004\n",
			want: []agent.GPUStatus{st(0, "NVIDIA H800, rev 2, lot 7", u0, 81559, 0, 81004)},
		},
		{
			name: "sorted by index",
			out:  "1, NVIDIA L40S, " + u1 + ", 46068, 0, 45589\n0, NVIDIA H800, " + u0 + ", 81559, 0, 81004\n",
			want: []agent.GPUStatus{h800, st(1, "NVIDIA L40S", u1, 46068, 0, 45589)},
		},
		{
			name: "placeholders",
			out: "0, NVIDIA A100-SXM4-40GB, [N/A], [Not Supported], N/A, [Unknown Error]\n" +
				"1, NVIDIA A30, MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee, 24576, 12, [N/A]\n",
			want: []agent.GPUStatus{
				noUsage(0, "NVIDIA A100-SXM4-40GB", "", 0),
				noUsage(1, "NVIDIA A30", "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", 24576),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agent.ParseNvidiaSMIStatus([]byte(tc.out))
			if err != nil {
				t.Fatalf("ParseNvidiaSMIStatus: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseNvidiaSMIErrors(t *testing.T) {
	const good = "0, NVIDIA H800, GPU-00000000-1111-2222-3333-444444444444, 81559, 0, 81004\n"
	tests := []struct {
		name     string
		out      string
		wantLine int
		wantMsg  string
	}{
		{name: "driver failure message", out: string(readTestdata(t, "driver_failed.txt")), wantLine: 1, wantMsg: "want 6 comma-separated fields"},
		{name: "too few fields", out: "0, NVIDIA H800, GPU-x, 81559\n", wantLine: 1, wantMsg: "got 4"},
		{name: "line number counts blank lines", out: good + "\n\r\n1, NVIDIA H800\n", wantLine: 4, wantMsg: "got 2"},
		{name: "index not a number", out: "zero, NVIDIA H800, GPU-x, 81559, 0, 81004\n", wantMsg: `index "zero"`},
		{name: "negative index", out: "-1, NVIDIA H800, GPU-x, 81559, 0, 81004\n", wantMsg: `index "-1"`},
		{name: "index unavailable", out: "[N/A], NVIDIA H800, GPU-x, 81559, 0, 81004\n", wantMsg: "index is [N/A]"},
		{name: "empty name", out: "0, , GPU-x, 81559, 0, 81004\n", wantMsg: "no name"},
		{name: "name unavailable", out: "0, [N/A], GPU-x, 81559, 0, 81004\n", wantMsg: "no name"},
		{name: "unbalanced quote", out: `0, "NVIDIA H800, GPU-x, 81559, 0, 81004` + "\n", wantMsg: "unbalanced quote"},
		{
			name:    "other query's columns",
			out:     "0, NVIDIA H800, GPU-00000000-1111-2222-3333-444444444444, 00000000:18:00.0, 81559, 0, 81004\n",
			wantMsg: `uuid "00000000:18:00.0"`,
		},
		{name: "total not a number", out: "0, NVIDIA H800, GPU-x, 80GB, 0, 81004\n", wantMsg: `memory.total "80GB"`},
		{name: "used negative", out: "0, NVIDIA H800, GPU-x, 81559, -3, 81004\n", wantMsg: `memory.used "-3"`},
		{name: "free decimal", out: "0, NVIDIA H800, GPU-x, 81559, 0, 81004.5\n", wantMsg: `memory.free "81004.5"`},
		{name: "total overflows bytes", out: "0, NVIDIA H800, GPU-x, 17592186044416, 0, 0\n", wantMsg: "too large"},
		{name: "repeated index", out: good + good, wantLine: 2, wantMsg: "index 0 repeats line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gpus, err := agent.ParseNvidiaSMI([]byte(tc.out))
			if err == nil {
				t.Fatalf("no error; got %+v", gpus)
			}
			if !errors.Is(err, agent.ErrMalformedOutput) {
				t.Errorf("error %v does not match ErrMalformedOutput", err)
			}
			var pe *agent.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			wantLine := max(tc.wantLine, 1)
			if pe.Line != wantLine {
				t.Errorf("line %d, want %d (%v)", pe.Line, wantLine, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.wantMsg) || !strings.Contains(msg, fmt.Sprintf("line %d:", wantLine)) {
				t.Errorf("error %q does not say %q on line %d", msg, tc.wantMsg, wantLine)
			}
		})
	}
}

// fakeRunner answers one nvidia-smi call and records its arguments.
type fakeRunner struct {
	out []byte
	err error

	mu    sync.Mutex
	calls [][]string
}

func (f *fakeRunner) run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, append([]string{name}, args...))
	return f.out, f.err
}

func TestDiscover(t *testing.T) {
	errDriver := errors.New("exit status 9")
	notFound := &exec.Error{Name: "nvidia-smi", Err: exec.ErrNotFound}
	tests := []struct {
		name    string
		runner  *fakeRunner
		want    []state.GPU
		wantErr error // nil: no error
	}{
		{name: "no nvidia-smi is CPU-only", runner: &fakeRunner{err: notFound}},
		{name: "not found wrapped is CPU-only", runner: &fakeRunner{err: fmt.Errorf("nvidia-smi: %w", notFound)}},
		{name: "command failure", runner: &fakeRunner{err: errDriver}, wantErr: errDriver},
		{
			name:    "failure with output is still a failure",
			runner:  &fakeRunner{out: readTestdata(t, "h200_1x.csv"), err: errDriver},
			wantErr: errDriver,
		},
		{name: "malformed output", runner: &fakeRunner{out: readTestdata(t, "driver_failed.txt")}, wantErr: agent.ErrMalformedOutput},
		{name: "no GPUs listed", runner: &fakeRunner{out: []byte("\n")}},
		{
			name:   "output parsed",
			runner: &fakeRunner{out: readTestdata(t, "l40s_2x.csv")},
			want: []state.GPU{
				{Index: 0, Model: "NVIDIA L40S", MemoryBytes: 46068 * mib, UUID: "GPU-f1e9eb38-cb93-4983-8136-35506669cd1a"},
				{Index: 1, Model: "NVIDIA L40S", MemoryBytes: 46068 * mib, UUID: "GPU-9b5a2eae-c3dd-dd27-f985-bea3cd32dd61"},
			},
		},
	}
	wantCall := []string{"nvidia-smi",
		"--query-gpu=index,name,uuid,memory.total,memory.used,memory.free", "--format=csv,noheader,nounits"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agent.Discover(context.Background(), tc.runner.run)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("error %v, want one matching %v", err, tc.wantErr)
			}
			if len(got) != 0 || len(tc.want) != 0 {
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got  %+v\nwant %+v", got, tc.want)
				}
			}
			if len(tc.runner.calls) != 1 || !slices.Equal(tc.runner.calls[0], wantCall) {
				t.Fatalf("runner calls %q, want one %q", tc.runner.calls, wantCall)
			}
		})
	}
}

func TestDiscoverStatusKeepsUsage(t *testing.T) {
	r := &fakeRunner{out: readTestdata(t, "rtx4090_windows.csv")}
	got, err := agent.DiscoverStatus(context.Background(), r.run)
	if err != nil {
		t.Fatal(err)
	}
	want := []agent.GPUStatus{st(0, "NVIDIA GeForce RTX 4090", "GPU-e264c13d-ab90-c134-567d-5bf16871f251", 24564, 1203, 22976)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// TestDiscoverMissingBinary runs ExecRunner for real against a name that
// is on no PATH: the error exec gives must read as a CPU-only host.
func TestDiscoverMissingBinary(t *testing.T) {
	run := func(ctx context.Context, _ string, args ...string) ([]byte, error) {
		return agent.ExecRunner(0)(ctx, "sovra-test-no-such-nvidia-smi", args...)
	}
	got, err := agent.Discover(context.Background(), run)
	if err != nil || got != nil {
		t.Fatalf("got %+v, %v; want no GPUs and no error", got, err)
	}
}

func TestExecRunner(t *testing.T) {
	for _, bin := range []string{"sh", "sleep"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("no %s: %v", bin, err)
		}
	}
	tests := []struct {
		name     string
		timeout  time.Duration
		cmd      []string
		wantOut  string
		wantErr  error  // nil: no error
		wantMsg  string // in the error
		wantCode int    // exit code, when not 0
	}{
		{name: "output", cmd: []string{"sh", "-c", "echo '0, NVIDIA H800'; echo noise >&2"}, wantOut: "0, NVIDIA H800\n"},
		{
			name: "failure carries stderr", cmd: []string{"sh", "-c", "echo; echo 'driver gone' >&2; exit 9"},
			wantMsg: "driver gone", wantCode: 9,
		},
		{
			name:    "failure carries stdout when stderr is empty",
			cmd:     []string{"sh", "-c", "echo 'NVIDIA-SMI has failed because it could not communicate'; exit 9"},
			wantMsg: "NVIDIA-SMI has failed", wantCode: 9,
		},
		{name: "not found", cmd: []string{"sovra-test-no-such-command"}, wantErr: exec.ErrNotFound},
		{name: "timeout", timeout: 50 * time.Millisecond, cmd: []string{"sleep", "30"}, wantErr: context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, err := agent.ExecRunner(tc.timeout)(context.Background(), tc.cmd[0], tc.cmd[1:]...)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			failing := tc.wantErr != nil || tc.wantMsg != "" || tc.wantCode != 0
			if !failing {
				if err != nil || string(out) != tc.wantOut {
					t.Fatalf("got %q, %v; want %q", out, err, tc.wantOut)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; output %q", out)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v does not match %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
			if tc.wantCode != 0 {
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != tc.wantCode {
					t.Errorf("error %v is not exit code %d", err, tc.wantCode)
				}
			}
		})
	}
}

func TestParseGPUFlag(t *testing.T) {
	const gib, gb = 1 << 30, 1000 * 1000 * 1000
	gpus := func(model string, mem uint64, n int) []state.GPU {
		var out []state.GPU
		for i := range n {
			out = append(out, state.GPU{Index: i, Model: model, MemoryBytes: mem})
		}
		return out
	}
	tests := []struct {
		name string
		spec string
		want []state.GPU
	}{
		{name: "8xH800 GiB", spec: "8xH800:80GiB", want: gpus("H800", 80*gib, 8)},
		{name: "2xL40S GB", spec: "2xL40S:48GB", want: gpus("L40S", 48*gb, 2)},
		{name: "mixed items numbered in order", spec: "1xA100:40GiB,1xA100:80GiB", want: []state.GPU{
			{Index: 0, Model: "A100", MemoryBytes: 40 * gib},
			{Index: 1, Model: "A100", MemoryBytes: 80 * gib},
		}},
		{name: "spaces and upper-case X", spec: " 2X H100 : 80 GiB , 1x RTX 4090:24GiB ", want: []state.GPU{
			{Index: 0, Model: "H100", MemoryBytes: 80 * gib},
			{Index: 1, Model: "H100", MemoryBytes: 80 * gib},
			{Index: 2, Model: "RTX 4090", MemoryBytes: 24 * gib},
		}},
		{name: "nvidia-smi name kept", spec: "1xNVIDIA H200:141GB", want: gpus("NVIDIA H200", 141*gb, 1)},
		{name: "MiB", spec: "1xH800:81559MiB", want: gpus("H800", 81559<<20, 1)},
		{name: "MB", spec: "1xT4:16000MB", want: gpus("T4", 16000*1000*1000, 1)},
		{name: "TiB", spec: "1xGB200:1TiB", want: gpus("GB200", 1<<40, 1)},
		{name: "TB", spec: "1xGB200:1TB", want: gpus("GB200", 1e12, 1)},
		{name: "unit case ignored", spec: "1xH800:80gib", want: gpus("H800", 80*gib, 1)},
		{name: "decimal", spec: "1xL4:22.5GiB", want: gpus("L4", 22*gib+gib/2, 1)},
		{name: "decimal rounded down", spec: "1xL4:0.1MiB", want: gpus("L4", 104857, 1)},
		{name: "none", spec: "none", want: []state.GPU{}},
		{name: "NONE", spec: " NONE ", want: []state.GPU{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agent.ParseGPUFlag(tc.spec)
			if err != nil {
				t.Fatalf("ParseGPUFlag(%q): %v", tc.spec, err)
			}
			if !reflect.DeepEqual(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("ParseGPUFlag(%q):\ngot  %#v\nwant %#v", tc.spec, got, tc.want)
			}
		})
	}
}

func TestParseGPUFlagErrors(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		wantMsg string
	}{
		{name: "empty", spec: "  ", wantMsg: "empty"},
		{name: "zero count", spec: "0xH800:80GiB", wantMsg: `"0xH800:80GiB": count 0 must be at least 1`},
		{name: "no x", spec: "8H800:80", wantMsg: `"8H800:80": no x after the count 8`},
		{name: "no count", spec: "xH800:80GiB", wantMsg: "no count"},
		{name: "count only", spec: "8", wantMsg: "no x after the count 8"},
		{name: "missing memory", spec: "8xH800", wantMsg: "no memory"},
		{name: "empty memory", spec: "8xH800:", wantMsg: "no memory"},
		{name: "missing model", spec: "8x:80GiB", wantMsg: "no model"},
		{name: "no unit", spec: "8xH800:80", wantMsg: `memory "80" has no unit`},
		{name: "unknown unit", spec: "8xH800:80PB", wantMsg: `unknown unit "PB"`},
		{name: "bare G", spec: "8xH800:80G", wantMsg: `unknown unit "G"`},
		{name: "exponent", spec: "8xH800:1e3GiB", wantMsg: `unknown unit "e3GiB"`},
		{name: "negative memory", spec: "8xH800:-80GiB", wantMsg: "does not start with a number"},
		{name: "two dots", spec: "8xH800:1.2.3GiB", wantMsg: "does not start with a number"},
		{name: "zero memory", spec: "8xH800:0GiB", wantMsg: "more than zero"},
		{name: "memory below one byte", spec: "1xH800:0.0000001MB", wantMsg: "more than zero"},
		{name: "memory overflows", spec: "1xH800:20000000TiB", wantMsg: "too large"},
		{name: "empty item", spec: "8xH800:80GiB,", wantMsg: `item 2 ""`},
		{name: "bad second item", spec: "8xH800:80GiB,2xL40S", wantMsg: `item 2 "2xL40S": no memory`},
		{name: "count too large", spec: "80000xH800:80GiB", wantMsg: "more than 1024"},
		{name: "count overflows int", spec: "99999999999999999999xH800:80GiB", wantMsg: "more than 1024"},
		{name: "total too large", spec: "1000xH800:80GiB,100xH800:80GiB", wantMsg: "more than 1024 GPUs in all"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agent.ParseGPUFlag(tc.spec)
			if err == nil {
				t.Fatalf("ParseGPUFlag(%q) = %+v, want an error", tc.spec, got)
			}
			if !errors.Is(err, agent.ErrBadGPUSpec) {
				t.Errorf("error %v does not match ErrBadGPUSpec", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
		})
	}
}

func TestSameGPUs(t *testing.T) {
	base := []state.GPU{
		{Index: 0, Model: "NVIDIA H800", MemoryBytes: 80 << 30, UUID: "GPU-a"},
		{Index: 1, Model: "NVIDIA H800", MemoryBytes: 80 << 30, UUID: "GPU-b"},
	}
	with := func(f func(g []state.GPU) []state.GPU) []state.GPU { return f(slices.Clone(base)) }
	tests := []struct {
		name string
		b    []state.GPU
		same bool
	}{
		{name: "equal", b: slices.Clone(base), same: true},
		{name: "index", b: with(func(g []state.GPU) []state.GPU { g[1].Index = 2; return g })},
		{name: "model", b: with(func(g []state.GPU) []state.GPU { g[0].Model = "NVIDIA H100"; return g })},
		{name: "memory", b: with(func(g []state.GPU) []state.GPU { g[0].MemoryBytes = 40 << 30; return g })},
		{name: "uuid", b: with(func(g []state.GPU) []state.GPU { g[1].UUID = "GPU-c"; return g })},
		{name: "one fewer", b: base[:1]},
		{name: "none", b: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := agent.SameGPUs(base, tc.b); got != tc.same {
				t.Fatalf("SameGPUs = %v, want %v", got, tc.same)
			}
		})
	}
	if !agent.SameGPUs(nil, []state.GPU{}) {
		t.Fatal("nil and empty inventories differ")
	}
}

// step is one scripted nvidia-smi answer.
type step struct {
	out string
	err error
}

// scriptedRunner answers nvidia-smi calls from a script, one step a call.
type scriptedRunner struct {
	t     *testing.T
	steps []step

	mu    sync.Mutex
	calls int
}

func (s *scriptedRunner) run(_ context.Context, _ string, _ ...string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls > len(s.steps) {
		s.t.Errorf("nvidia-smi call %d, script has %d steps", s.calls, len(s.steps))
		return nil, errors.New("script exhausted")
	}
	st := s.steps[s.calls-1]
	return []byte(st.out), st.err
}

func (s *scriptedRunner) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// smiRow is one GPU line of nvidia-smi output, memory in MiB.
type smiRow struct {
	index             int
	model, uuid       string
	total, used, free uint64
}

func smiOutput(rows ...smiRow) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%d, %s, %s, %d, %d, %d\n", r.index, r.model, r.uuid, r.total, r.used, r.free)
	}
	return b.String()
}

func inventoryOf(rows ...smiRow) []state.GPU {
	gpus := []state.GPU{}
	for _, r := range rows {
		gpus = append(gpus, state.GPU{Index: r.index, Model: r.model, MemoryBytes: r.total * mib, UUID: r.uuid})
	}
	return gpus
}

// watch runs inv until the returned stop is called; OnChange and OnError
// feed the returned channels.
func watch(t *testing.T, inv *agent.Inventory) (changes chan []state.GPU, errs chan error, stop func()) {
	t.Helper()
	changes = make(chan []state.GPU, 16)
	errs = make(chan error, 16)
	inv.OnChange = func(g []state.GPU) { changes <- g }
	inv.OnError = func(err error) { errs <- err }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inv.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return changes, errs, stop
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

func tick(t *testing.T, ticks chan<- time.Time) {
	t.Helper()
	select {
	case ticks <- time.Now():
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not take the tick")
	}
}

func wantChange(t *testing.T, changes <-chan []state.GPU, want []state.GPU) {
	t.Helper()
	got := recv(t, changes, "inventory change")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("change:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestInventoryReportsOnlyChanges(t *testing.T) {
	const u = "GPU-00000000-0000-0000-0000-00000000000"
	row := func(i int, used uint64) smiRow {
		return smiRow{i, "NVIDIA H800", fmt.Sprintf("%s%d", u, i), 81559, used, 81004 - used}
	}
	eight := []smiRow{row(0, 0), row(1, 0), row(2, 0), row(3, 0), row(4, 0), row(5, 0), row(6, 0), row(7, 0)}
	busy := []smiRow{row(0, 70000), row(1, 70000), row(2, 0), row(3, 0), row(4, 0), row(5, 0), row(6, 0), row(7, 0)}
	seven := eight[:7]
	newUUID := slices.Clone(seven)
	newUUID[3].uuid = "GPU-ffffffff-ffff-ffff-ffff-ffffffffffff"
	smaller := slices.Clone(newUUID)
	smaller[0].total = 40960
	renamed := slices.Clone(smaller)
	renamed[6].model = "NVIDIA H800 PCIe"

	errGone := errors.New("Unable to determine the device handle for GPU0000:18:00.0: Unknown Error")
	r := &scriptedRunner{t: t, steps: []step{
		{out: smiOutput(eight...)},   // first: always reported
		{out: smiOutput(busy...)},    // used memory only: not reported
		{out: smiOutput(seven...)},   // GPU 7 gone
		{err: errGone},               // error: reported to OnError only
		{out: smiOutput(seven...)},   // back, unchanged: not reported
		{out: smiOutput(newUUID...)}, // UUID changed
		{out: smiOutput(smaller...)}, // total memory changed
		{out: smiOutput(renamed...)}, // model changed
	}}
	ticks := make(chan time.Time)
	inv := &agent.Inventory{Runner: r.run, Ticks: ticks}
	changes, errs, stop := watch(t, inv)

	wantChange(t, changes, inventoryOf(eight...))
	tick(t, ticks) // busy
	tick(t, ticks) // seven; a report of busy would come first and fail here
	wantChange(t, changes, inventoryOf(seven...))
	tick(t, ticks) // error
	if err := recv(t, errs, "discovery error"); !errors.Is(err, errGone) {
		t.Fatalf("OnError got %v, want %v", err, errGone)
	}
	tick(t, ticks) // seven again
	tick(t, ticks) // new UUID
	wantChange(t, changes, inventoryOf(newUUID...))
	tick(t, ticks)
	wantChange(t, changes, inventoryOf(smaller...))
	tick(t, ticks)
	wantChange(t, changes, inventoryOf(renamed...))
	stop()

	if n := r.count(); n != len(r.steps) {
		t.Errorf("nvidia-smi ran %d times, want %d", n, len(r.steps))
	}
	if len(changes) != 0 || len(errs) != 0 {
		t.Errorf("unexpected reports left: %d changes, %d errors", len(changes), len(errs))
	}
}

func TestInventoryFirstReport(t *testing.T) {
	l40s := []smiRow{{0, "NVIDIA L40S", "GPU-f1e9eb38-cb93-4983-8136-35506669cd1a", 46068, 0, 45589}}
	notFound := &exec.Error{Name: "nvidia-smi", Err: exec.ErrNotFound}
	tests := []struct {
		name       string
		steps      []step
		ticks      int
		wantErrs   int
		wantChange []state.GPU
	}{
		{name: "CPU-only host reports an empty inventory", steps: []step{{err: notFound}}, wantChange: []state.GPU{}},
		{name: "empty output reports an empty inventory", steps: []step{{out: "\n"}}, wantChange: []state.GPU{}},
		{
			name:  "first report waits for a discovery that works",
			steps: []step{{err: errors.New("exit status 9")}, {out: "garbage\n"}, {out: smiOutput(l40s...)}},
			ticks: 2, wantErrs: 2, wantChange: inventoryOf(l40s...),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &scriptedRunner{t: t, steps: tc.steps}
			ticks := make(chan time.Time)
			changes, errs, stop := watch(t, &agent.Inventory{Runner: r.run, Ticks: ticks})
			for i := range tc.ticks {
				if i < tc.wantErrs {
					recv(t, errs, "discovery error")
				}
				tick(t, ticks)
			}
			got := recv(t, changes, "first inventory")
			if len(got) != 0 || len(tc.wantChange) != 0 {
				if !reflect.DeepEqual(got, tc.wantChange) {
					t.Fatalf("got  %+v\nwant %+v", got, tc.wantChange)
				}
			}
			stop()
			if len(changes) != 0 || len(errs) != 0 {
				t.Errorf("unexpected reports left: %d changes, %d errors", len(changes), len(errs))
			}
		})
	}
}

func TestInventoryOverride(t *testing.T) {
	flagGPUs, err := agent.ParseGPUFlag("2xL40S:48GB")
	if err != nil {
		t.Fatal(err)
	}
	cpuOnly, err := agent.ParseGPUFlag("none")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		override []state.GPU
	}{
		{name: "flag GPUs", override: flagGPUs},
		{name: "none", override: cpuOnly},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &scriptedRunner{t: t} // no steps: any call fails the test
			ticks := make(chan time.Time, 1)
			ticks <- time.Now() // an override must not consume ticks either
			inv := &agent.Inventory{Runner: r.run, Ticks: ticks, Override: tc.override}
			changes, errs, stop := watch(t, inv)
			got := recv(t, changes, "override report")
			if !reflect.DeepEqual(got, tc.override) {
				t.Fatalf("got %+v, want %+v", got, tc.override)
			}
			stop()
			if r.count() != 0 {
				t.Errorf("nvidia-smi ran %d times under an override", r.count())
			}
			if len(ticks) != 1 {
				t.Errorf("Run took a tick under an override")
			}
			if len(changes) != 0 || len(errs) != 0 {
				t.Errorf("unexpected reports left: %d changes, %d errors", len(changes), len(errs))
			}
		})
	}
}

// TestInventoryOwnsItsCopy checks that a consumer changing a reported slice
// neither changes the Override nor hides the next change.
func TestInventoryOwnsItsCopy(t *testing.T) {
	one := []smiRow{{0, "NVIDIA H200", "GPU-7a54bad7-f8fe-b493-2487-239cc57c5ab6", 143771, 0, 143196}}
	r := &scriptedRunner{t: t, steps: []step{{out: smiOutput(one...)}, {out: smiOutput(one...)}}}
	ticks := make(chan time.Time)
	changes, _, stop := watch(t, &agent.Inventory{Runner: r.run, Ticks: ticks})
	got := recv(t, changes, "first inventory")
	got[0].MemoryBytes = 1 // the consumer scribbles on its slice
	tick(t, ticks)
	stop()
	if len(changes) != 0 {
		t.Fatalf("a consumer's edit made an unchanged inventory report: %+v", <-changes)
	}

	override := []state.GPU{{Index: 0, Model: "H800", MemoryBytes: 80 << 30}}
	changes, _, stop = watch(t, &agent.Inventory{Override: override})
	recv(t, changes, "override report")[0].Model = "scribbled"
	stop()
	if override[0].Model != "H800" {
		t.Fatalf("the report shares the Override's array: %+v", override)
	}
}

func FuzzParseNvidiaSMI(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.csv"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range append(files, filepath.Join("testdata", "driver_failed.txt")) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`0, "a,b", GPU-x, 1, 2, 3`))
	f.Fuzz(func(t *testing.T, out []byte) {
		gpus, err := agent.ParseNvidiaSMIStatus(out)
		if err != nil {
			var pe *agent.ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || !errors.Is(err, agent.ErrMalformedOutput) {
				t.Fatalf("error %v is not a *ParseError with a line", err)
			}
			return
		}
		for i, g := range gpus {
			if g.Model == "" || g.Index < 0 || (i > 0 && gpus[i-1].Index >= g.Index) {
				t.Fatalf("bad inventory %+v", gpus)
			}
			if !g.UsageKnown && (g.UsedBytes != 0 || g.FreeBytes != 0) {
				t.Fatalf("usage without UsageKnown: %+v", g)
			}
		}
	})
}

func FuzzParseGPUFlag(f *testing.F) {
	for _, s := range []string{"8xH800:80GiB", "2xL40S:48GB", "1xA100:40GiB,1xA100:80GiB", "none", "0xH800:80GiB", "8H800:80", "1xL4:0.5TB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		gpus, err := agent.ParseGPUFlag(spec)
		if err != nil {
			if !errors.Is(err, agent.ErrBadGPUSpec) {
				t.Fatalf("error %v does not match ErrBadGPUSpec", err)
			}
			return
		}
		if len(gpus) > agent.MaxFlagGPUs {
			t.Fatalf("%d GPUs", len(gpus))
		}
		for i, g := range gpus {
			if g.Index != i || g.Model == "" || g.MemoryBytes == 0 {
				t.Fatalf("bad GPU %d: %+v", i, g)
			}
		}
	})
}
