// Package agent is the node agent: the part of a node that looks after its
// own hardware and its own Ollama.
//
// GPU discovery reads the node's GPU inventory from nvidia-smi, or takes it
// from an operator override, and watches it for changes, so that the cluster
// can place models by VRAM and GPU type. ReadPower reads each GPU's power,
// energy counter, utilisation and power cap from nvidia-smi for the
// energy accounting (package node/energy).
//
// The Reconciler drives the local Ollama to this node's placements in the
// replicated state: it pulls a placed model that is not on disk (reporting
// pulling, with throttled progress), loads and pins it in memory with
// keep_alive -1 (loading), and reports it ready once /api/ps lists it. It
// unloads models no longer placed here but keeps them on disk, reports
// failures with their reason and retries them with capped exponential
// backoff, loads models again after Ollama lost them (a restart), and keeps
// the node's list of models on disk fresh for the scheduler. It reads the
// state and commits its reports through small interfaces (StateSource,
// Reporter) and talks to Ollama through backend.Backend, on goroutines of
// its own: nothing on the inference path waits for it.
//
// Seams for tests are plain values: nvidia-smi is run through a
// CommandRunner, the GPU watcher's ticks can come from any channel, and the
// reconciler's timers come from a Clock.
package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

// The nvidia-smi command that Discover runs:
//
//	nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,memory.free --format=csv,noheader,nounits
//
// It prints one line per GPU with those six fields in that order, separated
// by ", ", memory in MiB, for example:
//
//	0, NVIDIA H800, GPU-a92d91b0-dca9-7694-0894-e277504bd1a7, 81559, 61234, 19770
//
// A field the board or driver cannot give reads "[N/A]" or "[Not Supported]".
const (
	NvidiaSMI       = "nvidia-smi"
	NvidiaSMIQuery  = "--query-gpu=index,name,uuid,memory.total,memory.used,memory.free"
	NvidiaSMIFormat = "--format=csv,noheader,nounits"
)

// DefaultCommandTimeout bounds one nvidia-smi run of ExecRunner when it is
// given no timeout. nvidia-smi answers in well under a second on a healthy
// host but can hang for long on a wedged driver.
const DefaultCommandTimeout = 10 * time.Second

// DefaultInterval is how often Inventory re-discovers when given no interval.
const DefaultInterval = 30 * time.Second

// MaxFlagGPUs caps the GPUs one ParseGPUFlag spec may declare, so that a typo
// such as 80000xH800 fails instead of building a huge inventory.
const MaxFlagGPUs = 1024

var (
	// ErrMalformedOutput is wrapped by every *ParseError: nvidia-smi's output
	// is not what the query in NvidiaSMIQuery prints.
	ErrMalformedOutput = errors.New("malformed nvidia-smi output")
	// ErrBadGPUSpec is wrapped by every error of ParseGPUFlag.
	ErrBadGPUSpec = errors.New("bad GPU spec")
)

// ParseError is a line of nvidia-smi output that could not be read.
// It matches ErrMalformedOutput and its cause under errors.Is.
type ParseError struct {
	Line int    // 1-based line number in the output
	Text string // the line, trimmed
	Err  error  // what is wrong with it
}

func (e *ParseError) Error() string {
	text := e.Text
	if len(text) > 120 {
		text = text[:120] + "..."
	}
	return fmt.Sprintf("agent: nvidia-smi output line %d: %v: %q", e.Line, e.Err, text)
}

// Unwrap gives ErrMalformedOutput and the cause.
func (e *ParseError) Unwrap() []error { return []error{ErrMalformedOutput, e.Err} }

// GPUStatus is one GPU as nvidia-smi reports it: its inventory entry plus
// its memory in use right now.
type GPUStatus struct {
	state.GPU
	// UsedBytes and FreeBytes are memory.used and memory.free. They need not
	// add up to MemoryBytes: the driver reserves some memory.
	UsedBytes uint64
	FreeBytes uint64
	// UsageKnown is false when nvidia-smi gave no number for used or free
	// memory (for example "[N/A]" on a GPU in MIG mode); both are then 0.
	UsageKnown bool
}

// GPUs returns the inventory entries of statuses, in the same order.
func GPUs(statuses []GPUStatus) []state.GPU {
	if statuses == nil {
		return nil
	}
	gpus := make([]state.GPU, len(statuses))
	for i, s := range statuses {
		gpus[i] = s.GPU
	}
	return gpus
}

// ParseNvidiaSMI reads the output of the nvidia-smi query documented at
// NvidiaSMI into the node's GPU inventory, sorted by index. See
// ParseNvidiaSMIStatus for the rules.
func ParseNvidiaSMI(out []byte) ([]state.GPU, error) {
	statuses, err := ParseNvidiaSMIStatus(out)
	return GPUs(statuses), err
}

// ParseNvidiaSMIStatus reads the output of the nvidia-smi query documented
// at NvidiaSMI, sorted by index, with used and free memory.
//
// Blank lines, surrounding spaces, a byte-order mark and Windows line
// endings are ignored. A field wrapped in double quotes is unquoted; since
// the name is the only free-text field, an unquoted name that holds commas
// is still read whole. memory.total of "[N/A]" or "[Not Supported]" gives
// MemoryBytes 0 (the GPU stays in the inventory; nothing is placed on it),
// an unavailable UUID gives "", and unavailable used or free memory clears
// UsageKnown. A missing index or name, a UUID without the "GPU-" or "MIG-"
// prefix (the sign of a different query's columns), a bad number or a
// repeated index fails with a *ParseError that names the line. No GPU lines
// at all is an empty inventory.
func ParseNvidiaSMIStatus(out []byte) ([]GPUStatus, error) {
	text := strings.TrimPrefix(string(out), "\ufeff")
	var gpus []GPUStatus
	lineOf := make(map[int]int) // index -> line it was on
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSpace(line) // also drops a trailing \r
		if line == "" {
			continue
		}
		g, err := parseGPULine(line)
		if err == nil {
			if prev, dup := lineOf[g.Index]; dup {
				err = fmt.Errorf("index %d repeats line %d", g.Index, prev)
			}
		}
		if err != nil {
			return nil, &ParseError{Line: n, Text: line, Err: err}
		}
		lineOf[g.Index] = n
		gpus = append(gpus, g)
	}
	slices.SortStableFunc(gpus, func(a, b GPUStatus) int { return a.Index - b.Index })
	return gpus, nil
}

// nvidiaSMIFields is the number of fields NvidiaSMIQuery asks for.
const nvidiaSMIFields = 6

// parseGPULine reads one non-blank line of nvidia-smi output.
func parseGPULine(line string) (GPUStatus, error) {
	f, err := splitGPULine(line)
	if err != nil {
		return GPUStatus{}, err
	}
	var g GPUStatus
	if unavailable(f[0]) {
		return g, fmt.Errorf("index is %s", f[0])
	}
	if g.Index, err = strconv.Atoi(f[0]); err != nil || g.Index < 0 {
		return g, fmt.Errorf("index %q is not a GPU index", f[0])
	}
	if f[1] == "" || unavailable(f[1]) {
		return g, fmt.Errorf("GPU %d has no name", g.Index)
	}
	g.Model = f[1]
	if !unavailable(f[2]) {
		if !strings.HasPrefix(f[2], "GPU-") && !strings.HasPrefix(f[2], "MIG-") {
			return g, fmt.Errorf("uuid %q does not start with GPU- or MIG-", f[2])
		}
		g.UUID = f[2]
	}
	total, _, err := parseMiB("memory.total", f[3])
	if err != nil {
		return g, err
	}
	used, usedOK, err := parseMiB("memory.used", f[4])
	if err != nil {
		return g, err
	}
	free, freeOK, err := parseMiB("memory.free", f[5])
	if err != nil {
		return g, err
	}
	g.MemoryBytes = total
	if usedOK && freeOK {
		g.UsedBytes, g.FreeBytes, g.UsageKnown = used, free, true
	}
	return g, nil
}

// splitGPULine splits a line into its six fields, trimmed and unquoted. The
// first field ends at the first comma and the last four start after the
// last four commas; what lies between is the name, commas and all.
func splitGPULine(line string) ([]string, error) {
	fields := strings.Count(line, ",") + 1
	if fields < nvidiaSMIFields {
		return nil, fmt.Errorf("want %d comma-separated fields (index, name, uuid, memory.total, memory.used, memory.free), got %d",
			nvidiaSMIFields, fields)
	}
	f := make([]string, nvidiaSMIFields)
	first := strings.IndexByte(line, ',')
	f[0], line = line[:first], line[first+1:]
	for i := nvidiaSMIFields - 1; i >= 2; i-- {
		j := strings.LastIndexByte(line, ',')
		f[i], line = line[j+1:], line[:j]
	}
	f[1] = line
	for i := range f {
		s, err := unquote(f[i])
		if err != nil {
			return nil, err
		}
		f[i] = s
	}
	return f, nil
}

// unquote trims s and removes CSV double quotes around it.
func unquote(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, `"`) {
		return s, nil
	}
	if len(s) < 2 || !strings.HasSuffix(s, `"`) {
		return "", fmt.Errorf("unbalanced quote in %s", s)
	}
	return strings.TrimSpace(strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)), nil
}

// unavailable reports whether a field is one of nvidia-smi's placeholders
// for a value it cannot give: "[N/A]", "[Not Supported]", "[Unknown Error]"
// and the like, or a bare "N/A".
func unavailable(s string) bool {
	return s == "N/A" || (len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']')
}

// parseMiB reads a memory field in MiB (a " MiB" suffix, printed without
// nounits, is allowed) into bytes; known is false for a placeholder.
func parseMiB(field, s string) (bytes uint64, known bool, err error) {
	if unavailable(s) {
		return 0, false, nil
	}
	num := strings.TrimSpace(strings.TrimSuffix(s, "MiB"))
	mib, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s %q is not a number of MiB", field, s)
	}
	if mib > math.MaxUint64>>20 {
		return 0, false, fmt.Errorf("%s %q is too large", field, s)
	}
	return mib << 20, true, nil
}

// CommandRunner runs a command and returns its standard output. A command
// that cannot be found must give an error matching exec.ErrNotFound.
type CommandRunner func(ctx context.Context, name string, args ...string) ([]byte, error)

// ExecRunner returns a CommandRunner that runs commands with
// exec.CommandContext, each bounded by timeout (DefaultCommandTimeout when
// timeout is not positive). A failure's error carries the first line of
// what the command printed, so that "NVIDIA-SMI has failed ..." reaches
// the log.
func ExecRunner(timeout time.Duration) CommandRunner {
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.WaitDelay = time.Second // do not wait on pipes held by orphans
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			return out, nil
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w after %v (%w)", cerr, timeout, err)
		}
		if msg := firstLine(stderr.Bytes(), out); msg != "" {
			return out, fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return out, fmt.Errorf("%s: %w", name, err)
	}
}

// firstLine returns the first non-blank line of the first non-blank output,
// cut to a readable length.
func firstLine(outputs ...[]byte) string {
	for _, o := range outputs {
		for line := range strings.SplitSeq(string(o), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				if len(line) > 200 {
					line = line[:200] + "..."
				}
				return line
			}
		}
	}
	return ""
}

// Discover returns this host's GPU inventory from nvidia-smi, run through
// run (ExecRunner(0) when nil). A host without nvidia-smi (the runner's
// error matches exec.ErrNotFound) is a CPU-only host: no GPUs and no error.
// Any other failure of the command, or output that does not parse, is an
// error.
func Discover(ctx context.Context, run CommandRunner) ([]state.GPU, error) {
	statuses, err := DiscoverStatus(ctx, run)
	return GPUs(statuses), err
}

// DiscoverStatus is Discover with used and free memory.
func DiscoverStatus(ctx context.Context, run CommandRunner) ([]GPUStatus, error) {
	if run == nil {
		run = ExecRunner(0)
	}
	out, err := run(ctx, NvidiaSMI, NvidiaSMIQuery, NvidiaSMIFormat)
	if errors.Is(err, exec.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: discover GPUs: %w", err)
	}
	return ParseNvidiaSMIStatus(out)
}

// ParseGPUFlag reads an operator's GPU override, such as "8xH800:80GiB",
// "2xL40S:48GB" or "1xA100:40GiB,1xA100:80GiB": comma-separated items of
// COUNTxMODEL:MEMORY, where MEMORY is one GPU's memory, a number (decimals
// allowed, rounded down to whole bytes) and a unit: TiB, GiB, MiB (powers of
// 1024) or TB, GB, MB (powers of 1000), in any letter case. Indexes are
// numbered from 0 in the order given; UUIDs stay empty. A repeated flag may
// be joined with commas and parsed once. The spec "none" declares a
// CPU-only node and gives an empty, non-nil inventory.
//
// The model is kept as the operator wrote it ("H800", not "NVIDIA H800");
// whatever matches GPU models compares them through models.NormalizeGPUModel, under
// which both spellings are "H800".
//
// Every error wraps ErrBadGPUSpec and quotes the offending item.
func ParseGPUFlag(spec string) ([]state.GPU, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("%w: empty; want COUNTxMODEL:MEMORY such as 8xH800:80GiB, or none", ErrBadGPUSpec)
	}
	if strings.EqualFold(spec, "none") {
		return []state.GPU{}, nil
	}
	var gpus []state.GPU
	for i, item := range strings.Split(spec, ",") {
		count, model, mem, err := parseGPUItem(strings.TrimSpace(item))
		if err != nil {
			return nil, fmt.Errorf("%w: item %d %q: %w", ErrBadGPUSpec, i+1, strings.TrimSpace(item), err)
		}
		if len(gpus)+count > MaxFlagGPUs {
			return nil, fmt.Errorf("%w: item %d %q: more than %d GPUs in all", ErrBadGPUSpec, i+1, strings.TrimSpace(item), MaxFlagGPUs)
		}
		for range count {
			gpus = append(gpus, state.GPU{Index: len(gpus), Model: model, MemoryBytes: mem})
		}
	}
	return gpus, nil
}

// parseGPUItem reads one COUNTxMODEL:MEMORY item.
func parseGPUItem(item string) (count int, model string, mem uint64, err error) {
	if item == "" {
		return 0, "", 0, errors.New("empty item; want COUNTxMODEL:MEMORY such as 8xH800:80GiB")
	}
	digits := len(item) - len(strings.TrimLeft(item, "0123456789"))
	if digits == 0 {
		return 0, "", 0, errors.New("no count; want COUNTxMODEL:MEMORY such as 8xH800:80GiB")
	}
	if digits == len(item) || (item[digits] != 'x' && item[digits] != 'X') {
		return 0, "", 0, fmt.Errorf("no x after the count %s; want COUNTxMODEL:MEMORY such as 8xH800:80GiB", item[:digits])
	}
	count, err = strconv.Atoi(item[:digits])
	if err != nil || count > MaxFlagGPUs {
		return 0, "", 0, fmt.Errorf("count %s is more than %d", item[:digits], MaxFlagGPUs)
	}
	if count < 1 {
		return 0, "", 0, fmt.Errorf("count %s must be at least 1", item[:digits])
	}
	rest := item[digits+1:]
	colon := strings.LastIndexByte(rest, ':')
	if colon < 0 || strings.TrimSpace(rest[colon+1:]) == "" {
		return 0, "", 0, errors.New("no memory; want COUNTxMODEL:MEMORY such as 8xH800:80GiB")
	}
	model = strings.TrimSpace(rest[:colon])
	if model == "" {
		return 0, "", 0, errors.New("no model; want COUNTxMODEL:MEMORY such as 8xH800:80GiB")
	}
	mem, err = parseMemory(strings.TrimSpace(rest[colon+1:]))
	return count, model, mem, err
}

// memoryUnits are the units parseMemory knows, by upper-case name.
var memoryUnits = map[string]uint64{
	"TIB": 1 << 40, "GIB": 1 << 30, "MIB": 1 << 20,
	"TB": 1e12, "GB": 1e9, "MB": 1e6,
}

// parseMemory reads a size such as "80GiB", "47.5 GB" into bytes.
func parseMemory(s string) (uint64, error) {
	numEnd := len(s) - len(strings.TrimLeft(s, "0123456789."))
	num, unit := s[:numEnd], strings.TrimSpace(s[numEnd:])
	if num == "" || num == "." || strings.Count(num, ".") > 1 {
		return 0, fmt.Errorf("memory %q does not start with a number", s)
	}
	if unit == "" {
		return 0, fmt.Errorf("memory %q has no unit (TiB, GiB, MiB, TB, GB, MB)", s)
	}
	size, ok := memoryUnits[strings.ToUpper(unit)]
	if !ok {
		return 0, fmt.Errorf("memory %q has unknown unit %q (want TiB, GiB, MiB, TB, GB, MB)", s, unit)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("memory %q does not start with a number", s)
	}
	r.Mul(r, new(big.Rat).SetUint64(size))
	b := new(big.Int).Quo(r.Num(), r.Denom())
	if !b.IsUint64() {
		return 0, fmt.Errorf("memory %q is too large", s)
	}
	if b.Sign() == 0 {
		return 0, fmt.Errorf("memory %q must be more than zero", s)
	}
	return b.Uint64(), nil
}

// Inventory watches this node's GPU inventory. Run discovers it at once
// and then every Interval, and calls OnChange with the first inventory and
// then whenever it changes. Set the fields before Run; do not change them
// while it runs.
type Inventory struct {
	// Runner runs nvidia-smi; nil means ExecRunner(0).
	Runner CommandRunner
	// Override, when not nil, replaces discovery entirely: Run reports it
	// once and runs nothing. An empty, non-nil Override (ParseGPUFlag("none"))
	// declares a CPU-only node.
	Override []state.GPU
	// Interval between discoveries; DefaultInterval when not positive.
	Interval time.Duration
	// Ticks, when not nil, replaces the ticker made from Interval: each
	// value received triggers one discovery. Tests drive Run with it.
	Ticks <-chan time.Time
	// OnChange receives the first inventory and every changed one, sorted by
	// index, on Run's goroutine. Two inventories differ when their GPUs'
	// index, model, total memory or UUID differ; used memory is not compared.
	OnChange func([]state.GPU)
	// OnError, when set, receives each failed discovery; the last inventory
	// stands and the next tick tries again. Failures caused by Run's ctx
	// ending are not reported.
	OnError func(error)
}

// Run watches the inventory until ctx ends, then returns nil.
func (inv *Inventory) Run(ctx context.Context) error {
	if inv.Override != nil {
		inv.report(slices.Clone(inv.Override))
		<-ctx.Done()
		return nil
	}
	ticks := inv.Ticks
	if ticks == nil {
		interval := inv.Interval
		if interval <= 0 {
			interval = DefaultInterval
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		ticks = t.C
	}
	var last []state.GPU
	reported := false
	for {
		gpus, err := Discover(ctx, inv.Runner)
		switch {
		case err != nil:
			if ctx.Err() == nil && inv.OnError != nil {
				inv.OnError(err)
			}
		case !reported || !SameGPUs(last, gpus):
			last, reported = gpus, true
			inv.report(slices.Clone(gpus))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
		}
	}
}

func (inv *Inventory) report(gpus []state.GPU) {
	if inv.OnChange != nil {
		inv.OnChange(gpus)
	}
}

// SameGPUs reports whether two inventories hold the same GPUs in the same
// order: equal index, model, total memory and UUID.
func SameGPUs(a, b []state.GPU) bool {
	return slices.EqualFunc(a, b, func(x, y state.GPU) bool {
		return x.Index == y.Index && x.Model == y.Model && x.MemoryBytes == y.MemoryBytes && x.UUID == y.UUID
	})
}
