package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// The nvidia-smi command that ReadPower runs:
//
//	nvidia-smi --query-gpu=index,uuid,power.draw,total_energy_consumption,utilization.gpu,power.limit --format=csv,noheader,nounits
//
// It prints one line per GPU with those six fields in that order, separated
// by ", ": power.draw is the board's power in W (on recent boards an
// average over about a second), total_energy_consumption the board's
// energy in mJ since the driver was last loaded (Volta and newer; "[N/A]"
// elsewhere), utilization.gpu the percent of the last sample period in
// which a kernel ran, power.limit the power cap in force in W. For example:
//
//	6, GPU-391fc3fc-d281-364a-d690-ccbb0208032c, 587.41, 392781553904, 91, 700.00
//
// NVML (github.com/NVIDIA/go-nvml) reads the same counters without a
// process per sample, but needs cgo and the driver's library at run time;
// sovra is one static binary (CGO_ENABLED=0), so it asks nvidia-smi.
const PowerQuery = "--query-gpu=index,uuid,power.draw,total_energy_consumption,utilization.gpu,power.limit"

// powerFields is the number of fields PowerQuery asks for.
const powerFields = 6

// PowerReading is one GPU's power figures at one moment. A figure the
// board or driver does not give ("[N/A]", "[Not Supported]") has its Has
// flag false and reads 0.
type PowerReading struct {
	Index int
	UUID  string // "" when unavailable
	// Watts is power.draw.
	Watts    float64
	HasWatts bool
	// EnergyMJ is total_energy_consumption: millijoules since the driver
	// was loaded.
	EnergyMJ  float64
	HasEnergy bool
	// Util is utilization.gpu in percent (0-100).
	Util    float64
	HasUtil bool
	// LimitWatts is power.limit.
	LimitWatts float64
	HasLimit   bool
}

// ParsePower reads the output of the nvidia-smi query documented at
// PowerQuery, sorted by index. Blank lines, surrounding spaces, a
// byte-order mark, Windows line endings, CSV quotes and unit suffixes
// (" W", " %", " mJ", printed without nounits) are ignored. A line without
// six fields, an index that is missing or repeated, or a figure that is
// neither a non-negative number nor a placeholder fails with a *ParseError
// that names the line (and matches ErrMalformedOutput). No lines at all is
// no GPUs.
func ParsePower(out []byte) ([]PowerReading, error) {
	text := strings.TrimPrefix(string(out), "\ufeff")
	var rs []PowerReading
	lineOf := make(map[int]int)
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		r, err := parsePowerLine(line)
		if err == nil {
			if prev, dup := lineOf[r.Index]; dup {
				err = fmt.Errorf("index %d repeats line %d", r.Index, prev)
			}
		}
		if err != nil {
			return nil, &ParseError{Line: n, Text: line, Err: err}
		}
		lineOf[r.Index] = n
		rs = append(rs, r)
	}
	slices.SortStableFunc(rs, func(a, b PowerReading) int { return a.Index - b.Index })
	return rs, nil
}

// parsePowerLine reads one non-blank line of the power query's output.
func parsePowerLine(line string) (PowerReading, error) {
	f := strings.Split(line, ",")
	if len(f) != powerFields {
		return PowerReading{}, fmt.Errorf("want %d comma-separated fields (index, uuid, power.draw, total_energy_consumption, utilization.gpu, power.limit), got %d",
			powerFields, len(f))
	}
	for i := range f {
		s, err := unquote(f[i])
		if err != nil {
			return PowerReading{}, err
		}
		f[i] = s
	}
	var r PowerReading
	var err error
	if r.Index, err = strconv.Atoi(f[0]); err != nil || r.Index < 0 {
		return r, fmt.Errorf("index %q is not a GPU index", f[0])
	}
	if !unavailable(f[1]) {
		if !strings.HasPrefix(f[1], "GPU-") && !strings.HasPrefix(f[1], "MIG-") {
			return r, fmt.Errorf("uuid %q does not start with GPU- or MIG-", f[1])
		}
		r.UUID = f[1]
	}
	figures := []struct {
		name, unit string
		v          *float64
		ok         *bool
	}{
		{"power.draw", "W", &r.Watts, &r.HasWatts},
		{"total_energy_consumption", "mJ", &r.EnergyMJ, &r.HasEnergy},
		{"utilization.gpu", "%", &r.Util, &r.HasUtil},
		{"power.limit", "W", &r.LimitWatts, &r.HasLimit},
	}
	for i, fig := range figures {
		if *fig.v, *fig.ok, err = parseFigure(fig.name, fig.unit, f[i+2]); err != nil {
			return r, err
		}
	}
	if r.Util > 100 {
		return r, fmt.Errorf("utilization.gpu %v is over 100", r.Util)
	}
	return r, nil
}

// parseFigure reads a non-negative number with an optional unit suffix;
// known is false for a placeholder.
func parseFigure(name, unit, s string) (v float64, known bool, err error) {
	if unavailable(s) {
		return 0, false, nil
	}
	num := strings.TrimSpace(strings.TrimSuffix(s, unit))
	v, err = strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false, fmt.Errorf("%s %q is not a number of %s", name, s, unit)
	}
	return v, true, nil
}

// ReadPower runs the query documented at PowerQuery through run
// (ExecRunner(0) when nil) and parses its output. A host without
// nvidia-smi (the runner's error matches exec.ErrNotFound) has no GPUs to
// read: nil and no error. Any other failure of the command, or output
// that does not parse, is an error.
func ReadPower(ctx context.Context, run CommandRunner) ([]PowerReading, error) {
	if run == nil {
		run = ExecRunner(0)
	}
	out, err := run(ctx, NvidiaSMI, PowerQuery, NvidiaSMIFormat)
	if errors.Is(err, exec.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: read GPU power: %w", err)
	}
	return ParsePower(out)
}
