package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sovra/sovra/internal/bench"
)

// The matrix's dimensions (`sovra-bench route --matrix`): how requests
// enter the cluster, whether they stream, what their prompts share, how
// fast the backends are, and the offered load.
const (
	entryOne = "one" // every request enters the same node
	entryRR  = "rr"  // requests enter the nodes in turn

	reqStream = "stream"
	reqUnary  = "unary"

	mixUnique    = "unique"    // a unique single message
	mixShared    = "shared"    // one system prompt shared by every request, then a unique question
	mixSame      = "same"      // the same single message on every request
	mixMultiTurn = "multiturn" // conversations, each turn carrying the history

	backendsEqual  = "equal"
	backendsSkewed = "skewed"

	// policyLCProxy is the least-connections baseline: the benchmark's own
	// reverse proxy in front of the simulators (like nginx least_conn),
	// one that sees every request, as with a single entry point.
	policyLCProxy = "lc"
	// policyLCEntry is least-connections deployed the way sovra is with
	// the rr entry pattern: one such proxy per node, each over every
	// simulator and counting only the requests it forwarded itself
	// (nginx least_conn on each host behind round-robin DNS), requests
	// entering them in turn. sovra's rr-entry runs are held to it.
	policyLCEntry = "lc-rr"
)

var (
	allEntries  = []string{entryOne, entryRR}
	allRequests = []string{reqStream, reqUnary}
	allMixes    = []string{mixUnique, mixShared, mixSame, mixMultiTurn}
	allBackends = []string{backendsEqual, backendsSkewed}
	// matrixPolicies: the oracle, the proxies and sovra's policies.
	matrixPolicies = []string{policyOracle, policyLCProxy, policyLCEntry, policyTTF, policyRR, policyLC}
)

// matrixFlags are the settings of `sovra-bench route --matrix`.
type matrixFlags struct {
	base     routeFlags // timings, sovra settings and binaries shared by every cell
	entries  []string
	requests []string
	mixes    []string
	backends []string
	loads    []float64
	policies []string
	speeds   map[string][]float64
	slots    int

	duration      time.Duration // measured window of each run
	warmup        time.Duration // unmeasured start of each run
	clusterWarmup time.Duration // unique streamed load after a cluster starts
	entryNode     int           // 1-based node the "one" entry pattern uses
	rounds        int           // interleaved rounds the window is split into
	maxLag        time.Duration // a round whose generator lagged more is run again
	redo          int           // how many times at most

	targets matrixTargets
	// dump, when set, is a directory that receives every run's samples.
	dump string
	// from, when set, is a JSON report to print instead of measuring.
	from string
}

// matrixTargets are what a sovra run is held to at Load percent.
type matrixTargets struct {
	Load         float64 `json:"load"`
	MeanVsOracle float64 `json:"mean_vs_oracle"`
	P99VsOracle  float64 `json:"p99_vs_oracle"`
	// VsLC: the mean and the p99 at most this times least-connections'.
	VsLC float64 `json:"vs_least_connections"`
}

// wantsMatrix says whether the route arguments ask for the matrix.
func wantsMatrix(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--matrix" || a == "-matrix" || a == "--matrix=true" || a == "-matrix=true" {
			return true
		}
	}
	return false
}

type listFlag struct {
	dst   *[]string
	known []string
	name  string
}

func (l listFlag) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l listFlag) Set(s string) error {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !slices.Contains(l.known, part) {
			return fmt.Errorf("unknown %s %q (known: %s)", l.name, part, strings.Join(l.known, ", "))
		}
		if !slices.Contains(out, part) {
			out = append(out, part)
		}
	}
	*l.dst = out
	return nil
}

type repeated struct{ dst *[]string }

func (r repeated) String() string { return "" }
func (r repeated) Set(s string) error {
	*r.dst = append(*r.dst, strings.Fields(s)...)
	return nil
}

func parseMatrixFlags(args []string) (*matrixFlags, error) {
	m := &matrixFlags{
		entries: allEntries, requests: allRequests, mixes: allMixes, backends: allBackends,
		policies: []string{policyOracle, policyLCProxy, policyLCEntry, policyTTF},
	}
	f := &m.base
	fs := flag.NewFlagSet("route --matrix", flag.ContinueOnError)
	fs.Bool("matrix", true, "run the matrix of workloads (this flag set)")
	fs.Var(listFlag{&m.entries, allEntries, "entry pattern"}, "entries", "entry patterns: one (every request enters --entry-node), rr (round-robin over the nodes)")
	fs.Var(listFlag{&m.requests, allRequests, "request type"}, "requests", "request types: stream, unary (stream:false)")
	fs.Var(listFlag{&m.mixes, allMixes, "prompt mix"}, "prompts", "prompt mixes: unique, shared (one system prompt on every request, then a unique question), same (one identical message on every request), multiturn")
	fs.Var(listFlag{&m.backends, allBackends, "backend set"}, "backends", "backend speed sets: equal, skewed")
	fs.Var(listFlag{&m.policies, matrixPolicies, "policy"}, "policies", "policies of every cell: oracle, lc (the benchmark's least-connections proxy, seeing every request), lc-rr (one such proxy per node, requests entering them in turn; run only with entry pattern rr), and sovra's ttf, round-robin, least-connections (one cluster each)")
	loads := fs.String("loads", "50,80,95", "offered loads, percent of capacity")
	equal := fs.String("equal-speeds", "2,2,2,2", "node speeds of the equal backend set (by default as much capacity in all as the skewed set)")
	skewed := fs.String("skewed-speeds", "1,1,2,4", "node speeds of the skewed backend set")
	fs.IntVar(&m.slots, "slots", 1, "slots of every backend (and sovra's --slots)")
	fs.DurationVar(&m.duration, "cell-duration", 20*time.Second, "measured time of each policy in a cell, over all its rounds")
	fs.DurationVar(&m.warmup, "cell-warmup", 3*time.Second, "unmeasured load at the cell's rate before the window")
	fs.DurationVar(&m.clusterWarmup, "cluster-warmup", 5*time.Second, "unique streamed load at 50% after a sovra cluster starts, so that it learns the speeds")
	fs.IntVar(&m.rounds, "rounds", 2, "rounds each cell's window is split into, the policies taking turns round by round, so that a burst of load from elsewhere on the machine does not fall on one policy alone")
	fs.DurationVar(&m.maxLag, "max-lag", maxLag, "a round in which the load generator started a request later than this (the machine was short of CPU) is run again")
	fs.IntVar(&m.redo, "redo", 3, "how many times at most a round is run again for --max-lag")
	fs.IntVar(&m.entryNode, "entry-node", 1, "the node (from 1) that the one-entry pattern sends to")
	fs.StringVar(&m.from, "report", "", "print the tables of this JSON report (from --json) instead of measuring")
	fs.StringVar(&m.dump, "dump", "", "write every run's samples as JSON into this directory")
	fs.Var(repeated{&f.sovraExtra}, "sovra-arg", "extra flags for every `sovra serve` (repeatable, split on spaces), e.g. \"--affinity-factor 0\"")

	fs.DurationVar(&f.ttft, "ttft", 40*time.Millisecond, "base time to first token at speed 1")
	fs.DurationVar(&f.promptCost, "prompt-token-cost", 500*time.Microsecond, "time per uncached prompt token at speed 1")
	fs.DurationVar(&f.cachedCost, "cached-token-cost", 20*time.Microsecond, "time per cached prompt token at speed 1")
	fs.Float64Var(&f.tokenRate, "tokens-per-second", 100, "decode speed at speed 1")
	fs.IntVar(&f.answerTokens, "answer-tokens", 24, "tokens of every answer")
	fs.IntVar(&f.promptWords, "prompt-words", 56, "words (one token each) of a single request's question")
	fs.IntVar(&f.systemWords, "system-words", 150, "words of the system prompt (shared and multiturn)")
	fs.IntVar(&f.userWords, "user-words", 25, "words of each user turn (multiturn)")
	fs.IntVar(&f.turns, "turns", 4, "turns of each conversation (multiturn)")
	fs.DurationVar(&f.think, "think", 500*time.Millisecond, "mean (exponential) time between a turn's answer and the next turn")

	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "limit for one request")
	fs.DurationVar(&f.settle, "settle", 300*time.Millisecond, "pause between runs after the simulators are idle")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the arrivals")
	fs.DurationVar(&f.loadInterval, "load-interval", 0, "sovra --load-interval (0: sovra's default)")
	fs.IntVar(&f.queueMax, "queue-max", 0, "sovra --queue-max (0: sovra's default)")
	fs.DurationVar(&f.queueTimeout, "queue-timeout", 15*time.Second, "sovra --queue-timeout")

	fs.Float64Var(&m.targets.Load, "target-load", 80, "load (percent) at which the targets are checked")
	fs.Float64Var(&m.targets.MeanVsOracle, "target-mean", 1.1, "target: sovra's mean at most this times the oracle's")
	fs.Float64Var(&m.targets.P99VsOracle, "target-p99", 1.3, "target: sovra's p99 at most this times the oracle's")
	fs.Float64Var(&m.targets.VsLC, "target-lc", 1, "target: sovra's mean and p99 at most this times least-connections'")

	fs.BoolVar(&f.quick, "quick", false, "smoke run: short windows (sets the durations not given)")
	fs.BoolVar(&f.json, "json", false, "print the report as JSON")
	fs.BoolVar(&f.strict, "strict", false, "exit with status 3 when a target is missed")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary directories with binaries and process logs")
	fs.StringVar(&f.sovraBin, "sovra-bin", "", "use this sovra binary instead of building ./cmd/sovra")
	fs.StringVar(&f.simBin, "sim-bin", "", "use this ollama-sim binary instead of building ./cmd/ollama-sim")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("route --matrix: unexpected arguments %q", fs.Args())}
	}
	if f.quick {
		applyQuick(fs, map[string]func(){
			"cell-duration":  func() { m.duration = 3 * time.Second },
			"rounds":         func() { m.rounds = 1 },
			"cell-warmup":    func() { m.warmup = time.Second },
			"cluster-warmup": func() { m.clusterWarmup = 2 * time.Second },
			"timeout":        func() { f.timeout = 12 * time.Second },
			"queue-timeout":  func() { f.queueTimeout = 5 * time.Second },
		})
	}
	return m, m.finish(*loads, *equal, *skewed)
}

// applyQuick runs the setters of the flags not given on the command line.
func applyQuick(fs *flag.FlagSet, quick map[string]func()) {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	for name, apply := range quick {
		if !set[name] {
			apply()
		}
	}
}

// finish parses the list flags and checks the settings.
func (m *matrixFlags) finish(loads, equal, skewed string) error {
	var err error
	if m.loads, err = parseFloats("--loads", loads, false); err != nil {
		return err
	}
	m.speeds = map[string][]float64{}
	if m.speeds[backendsEqual], err = parseFloats("--equal-speeds", equal, false); err != nil {
		return err
	}
	if m.speeds[backendsSkewed], err = parseFloats("--skewed-speeds", skewed, false); err != nil {
		return err
	}
	f := &m.base
	switch {
	case len(m.entries) == 0 || len(m.requests) == 0 || len(m.mixes) == 0 || len(m.backends) == 0 || len(m.policies) == 0:
		return usageError{errors.New("every dimension needs at least one value")}
	case len(m.speeds[backendsEqual]) != len(m.speeds[backendsSkewed]) || len(m.speeds[backendsEqual]) < 2 || len(m.speeds[backendsEqual]) > 16:
		return usageError{errors.New("--equal-speeds and --skewed-speeds need the same number of nodes, 2 to 16")}
	case m.slots < 1 || m.slots > 64:
		return usageError{errors.New("--slots must be in [1, 64]")}
	case m.entryNode < 1 || m.entryNode > len(m.speeds[backendsEqual]):
		return usageError{errors.New("--entry-node must name one of the nodes (from 1)")}
	case m.rounds < 1 || m.rounds > 100:
		return usageError{errors.New("--rounds must be in [1, 100]")}
	case m.duration <= 0 || m.warmup < 0 || m.clusterWarmup < 0 || f.timeout <= 0 || f.settle < 0 || f.think < 0:
		return usageError{errors.New("--cell-duration and --timeout must be positive, the other durations not negative")}
	case f.ttft < 0 || f.promptCost < 0 || f.cachedCost < 0 || f.tokenRate <= 0 || f.answerTokens < 1:
		return usageError{errors.New("the timings must not be negative, --tokens-per-second and --answer-tokens positive")}
	case f.promptWords < 2 || f.userWords < 3 || f.systemWords < 1 || f.turns < 2:
		return usageError{errors.New("--prompt-words >= 2, --user-words >= 3, --system-words >= 1 and --turns >= 2")}
	case f.queueMax < 0 || f.loadInterval < 0 || f.queueTimeout < 0:
		return usageError{errors.New("the sovra settings must not be negative")}
	}
	for _, l := range m.loads {
		if l > 200 {
			return usageError{fmt.Errorf("--loads: %g%% is more than twice the capacity", l)}
		}
	}
	f.maxRequests = 100000
	f.loads, f.mtLoad = m.loads, 80
	return nil
}

// isBaseline says whether policy is one the benchmark runs itself (the
// oracle, the least-connections proxies) rather than sovra's.
func isBaseline(policy string) bool {
	return policy == policyOracle || policy == policyLCProxy || policy == policyLCEntry
}

// sovraPolicies are the sovra policies among the matrix's policies.
func (m *matrixFlags) sovraPolicies() []string {
	var out []string
	for _, p := range m.policies {
		if !isBaseline(p) {
			out = append(out, p)
		}
	}
	return out
}

// baselines are the baselines among the matrix's policies that run in
// every cell: lc-rr only when sovra enters through the rr pattern, the
// one whose runs it is the comparator of.
func (m *matrixFlags) baselines() []string {
	var out []string
	for _, p := range m.policies {
		if isBaseline(p) && (p != policyLCEntry || slices.Contains(m.entries, entryRR)) {
			out = append(out, p)
		}
	}
	return out
}

// backendFlags are the route flags of one backend set.
func (m *matrixFlags) backendFlags(set string) *routeFlags {
	f := m.base
	f.speeds = m.speeds[set]
	f.slots = make([]int, len(f.speeds))
	for i := range f.slots {
		f.slots[i] = m.slots
	}
	return &f
}

// runRouteMatrix runs `sovra-bench route --matrix`.
func runRouteMatrix(ctx context.Context, args []string) error {
	m, err := parseMatrixFlags(args)
	if err != nil {
		return err
	}
	if m.from != "" {
		return printSaved(m)
	}
	rep, err := measureMatrix(ctx, m)
	if err != nil {
		return err
	}
	return printReport(rep, m.base.json, m.base.strict, func() {})
}

// printSaved prints a report saved with --json, evaluated again against
// the targets given now.
func printSaved(m *matrixFlags) error {
	var rep matrixReport
	if err := readSaved(m, &rep); err != nil {
		return err
	}
	return printReport(&rep, m.base.json, m.base.strict, func() {})
}

// readSaved reads the report of --report into rep and evaluates it.
func readSaved(m *matrixFlags, rep *matrixReport) error {
	b, err := os.ReadFile(m.from)
	if err != nil {
		return err
	}
	*rep = matrixReport{}
	if err := json.Unmarshal(b, rep); err != nil {
		return fmt.Errorf("%s: %w", m.from, err)
	}
	rep.Targets, rep.Notes, rep.lagLimit = m.targets, nil, m.maxLag
	for _, c := range rep.Cells {
		for _, r := range c.Runs {
			r.Misses, r.Checked = nil, false
		}
	}
	rep.evaluate()
	return nil
}

// measureMatrix builds the binaries once and measures every cell, backend
// set by backend set.
func measureMatrix(ctx context.Context, m *matrixFlags) (*matrixReport, error) {
	rep := &matrixReport{Targets: m.targets, lagLimit: m.maxLag, Settings: map[string]string{
		"cell_duration": m.duration.String(), "cell_warmup": m.warmup.String(), "rounds": strconv.Itoa(m.rounds), "max_lag": m.maxLag.String(), "seed": strconv.FormatUint(m.base.seed, 10),
		"cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(), "sovra_args": strings.Join(m.base.sovraExtra, " "),
	}}
	if _, text, err := bench.LoadAverage(); err == nil {
		rep.Settings["loadavg_start"] = strings.ReplaceAll(text, " ", "/")
	}
	dir, err := os.MkdirTemp("", "sovra-bench-matrix-")
	if err != nil {
		return nil, err
	}
	if !m.base.keep {
		defer os.RemoveAll(dir)
	}
	if err := m.buildBinaries(ctx, dir); err != nil {
		return nil, err
	}
	for _, set := range m.backends {
		if err := measureBackends(ctx, m, set, rep); err != nil {
			return rep, err
		}
	}
	if _, text, err := bench.LoadAverage(); err == nil {
		rep.Settings["loadavg_end"] = strings.ReplaceAll(text, " ", "/")
	}
	rep.evaluate()
	return rep, nil
}

// buildBinaries builds sovra and ollama-sim into dir unless given.
func (m *matrixFlags) buildBinaries(ctx context.Context, dir string) error {
	f := &m.base
	if f.sovraBin != "" && f.simBin != "" {
		return nil
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	progress("building ollama-sim and sovra in %s", dir)
	if f.simBin == "" {
		if f.simBin, err = build(ctx, root, "./cmd/ollama-sim", dir); err != nil {
			return err
		}
	}
	if f.sovraBin == "" {
		f.sovraBin, err = build(ctx, root, "./cmd/sovra", dir)
	}
	return err
}

// measureBackends starts the simulators of one backend set and runs its
// cells: the oracle and the proxy once per cell, sovra once per entry
// pattern and policy, with the same arrivals.
func measureBackends(ctx context.Context, m *matrixFlags, set string, rep *matrixReport) error {
	f := m.backendFlags(set)
	setup := newRouteSetup(f)
	progress("backends %s: %s", set, setup.summaryLine())
	r, err := newRouteRig(ctx, f, setup)
	if r != nil {
		defer r.tearDown(f.keep)
	}
	if err != nil {
		return err
	}
	x := newMatrixRunner(m, set, r)
	defer x.close()
	cells := x.cells()
	rep.Cells = append(rep.Cells, cells...)
	baselines := m.baselines()
	sovra := m.sovraPolicies()
	if len(sovra) == 0 {
		return x.runAll(ctx, cells, baselines, "")
	}
	for i, pol := range sovra {
		if i > 0 {
			baselines = nil
		}
		if err := x.withCluster(ctx, pol, func() error { return x.runAll(ctx, cells, baselines, pol) }); err != nil {
			return err
		}
	}
	return nil
}
