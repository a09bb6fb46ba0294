package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sovra/sovra/internal/bench"
)

// Routing policies: sovra's three, selected with --routing-policy, and the
// driver's own oracle, which sends straight to the simulators.
const (
	policyOracle = "oracle"
	policyTTF    = "ttf"
	policyRR     = "round-robin"
	policyLC     = "least-connections"
)

var allPolicies = []string{policyOracle, policyTTF, policyRR, policyLC}

// routeFlags are the settings of `sovra-bench route`.
type routeFlags struct {
	speeds []float64
	slots  []int

	ttft         time.Duration
	promptCost   time.Duration
	cachedCost   time.Duration
	tokenRate    float64
	answerTokens int
	promptWords  int

	loads       []float64
	policies    []string
	duration    time.Duration
	maxRequests int
	warmup      time.Duration
	timeout     time.Duration
	settle      time.Duration
	seed        uint64

	turns       int
	mtPolicies  []string
	mtLoad      float64
	mtDuration  time.Duration
	mtDrain     time.Duration
	think       time.Duration
	systemWords int
	userWords   int

	loadInterval time.Duration
	queueMax     int
	queueTimeout time.Duration

	targets routeTargets

	// sovraExtra are flags added to every `sovra serve` (the matrix's
	// --sovra-arg).
	sovraExtra []string

	quick    bool
	json     bool
	strict   bool
	keep     bool
	sovraBin string
	simBin   string
}

// routeTargets are the limits the report checks.
type routeTargets struct {
	// Load is the offered load (percent of capacity) the TTFT targets are
	// checked at.
	Load float64 `json:"load"`
	// MeanVsOracle and P99VsOracle bound ttf's mean and p99 TTFT over the
	// oracle's; P99VsLC bounds ttf's p99 TTFT over least-connections'.
	MeanVsOracle float64 `json:"mean_vs_oracle"`
	P99VsOracle  float64 `json:"p99_vs_oracle"`
	P99VsLC      float64 `json:"p99_vs_least_connections"`
	// Affinity is the least share of follow-up turns that must land on
	// the node of the previous turn; MaxNodeLoad bounds any node's load
	// relative to the average in the multi-turn workload.
	Affinity    float64 `json:"affinity"`
	MaxNodeLoad float64 `json:"max_node_load"`
}

func parseRouteFlags(args []string) (*routeFlags, error) {
	f := &routeFlags{}
	fs := flag.NewFlagSet("route", flag.ContinueOnError)
	speeds := fs.String("speeds", "1,1,2,0.5", "speed of each simulated GPU host, one per node (scales tokens per second and divides TTFT and prompt costs)")
	slots := fs.String("slots", "2,2,4,1", "parallel slots of each simulator (and sovra's --slots), one per node")
	fs.DurationVar(&f.ttft, "ttft", 40*time.Millisecond, "base time to first token at speed 1")
	fs.DurationVar(&f.promptCost, "prompt-token-cost", 500*time.Microsecond, "time per uncached prompt token at speed 1")
	fs.DurationVar(&f.cachedCost, "cached-token-cost", 20*time.Microsecond, "time per prompt token found in the prefix cache at speed 1")
	fs.Float64Var(&f.tokenRate, "tokens-per-second", 100, "decode speed of one stream at speed 1")
	fs.IntVar(&f.answerTokens, "answer-tokens", 24, "tokens of every answer")
	fs.IntVar(&f.promptWords, "prompt-words", 56, "words (one token each) of the single-turn user message")

	loads := fs.String("loads", "50,80,95", "offered loads of the single-turn workload, in percent of capacity (empty: skip it)")
	policies := fs.String("policies", strings.Join(allPolicies, ","), "policies to measure, in order")
	fs.DurationVar(&f.duration, "duration", 15*time.Second, "arrival window of each single-turn point")
	fs.IntVar(&f.maxRequests, "max-requests", 5000, "most requests of any one point")
	fs.DurationVar(&f.warmup, "warmup", 3*time.Second, "unmeasured load at 50% before each policy's points, so that sovra learns the speeds")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "limit for one request (from its send to the end of its stream)")
	fs.DurationVar(&f.settle, "settle", 500*time.Millisecond, "pause between points after the simulators are idle")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the arrival times and think times")

	fs.IntVar(&f.turns, "turns", 6, "turns of each conversation in the multi-turn workload")
	mtPolicies := fs.String("mt-policies", policyTTF+","+policyRR, "sovra policies that also run the multi-turn workload (empty: skip it)")
	fs.Float64Var(&f.mtLoad, "mt-load", 80, "offered load of the multi-turn workload, in percent of capacity with the history cached")
	fs.DurationVar(&f.mtDuration, "mt-duration", 20*time.Second, "window in which conversations start")
	fs.DurationVar(&f.mtDrain, "mt-drain", 20*time.Second, "time after the window in which conversations may still start turns")
	fs.DurationVar(&f.think, "think", time.Second, "mean (exponential) time a user thinks between two turns")
	fs.IntVar(&f.systemWords, "system-words", 150, "words of the system prompt all conversations share")
	fs.IntVar(&f.userWords, "user-words", 25, "words of each user turn")

	fs.DurationVar(&f.loadInterval, "load-interval", 0, "sovra --load-interval (0: sovra's default)")
	fs.IntVar(&f.queueMax, "queue-max", 0, "sovra --queue-max (0: sovra's default)")
	fs.DurationVar(&f.queueTimeout, "queue-timeout", 15*time.Second, "sovra --queue-timeout, below --timeout so that sovra rather than the client gives up on a request that waits too long (0: sovra's default)")

	fs.Float64Var(&f.targets.Load, "target-load", 80, "load (percent) at which the TTFT targets are checked")
	fs.Float64Var(&f.targets.MeanVsOracle, "target-mean", 1.1, "target: ttf's mean TTFT at most this times the oracle's")
	fs.Float64Var(&f.targets.P99VsOracle, "target-p99", 1.3, "target: ttf's p99 TTFT at most this times the oracle's")
	fs.Float64Var(&f.targets.P99VsLC, "target-p99-lc", 0.5, "target: ttf's p99 TTFT at most this times least-connections'")
	fs.Float64Var(&f.targets.Affinity, "target-affinity", 0.8, "target: share of follow-up turns on the previous turn's node, at least")
	fs.Float64Var(&f.targets.MaxNodeLoad, "target-node-load", 1.25, "target: no node's load above this times the average (multi-turn)")

	fs.BoolVar(&f.quick, "quick", false, "smoke run: a few seconds per point (sets the durations and timeouts not given)")
	fs.BoolVar(&f.json, "json", false, "print the report as JSON instead of tables")
	fs.BoolVar(&f.strict, "strict", false, "exit with status 3 when a target is missed")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary directory with binaries and process logs")
	fs.StringVar(&f.sovraBin, "sovra-bin", "", "use this sovra binary instead of building ./cmd/sovra")
	fs.StringVar(&f.simBin, "sim-bin", "", "use this ollama-sim binary instead of building ./cmd/ollama-sim")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("route: unexpected arguments %q", fs.Args())}
	}
	if f.quick {
		set := map[string]bool{}
		fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
		quick := map[string]func(){
			"duration":      func() { f.duration = 4 * time.Second },
			"warmup":        func() { f.warmup = time.Second },
			"timeout":       func() { f.timeout = 12 * time.Second },
			"queue-timeout": func() { f.queueTimeout = 5 * time.Second },
			"mt-duration":   func() { f.mtDuration = 4 * time.Second },
			"mt-drain":      func() { f.mtDrain = 4 * time.Second },
			"think":         func() { f.think = 300 * time.Millisecond },
			"settle":        func() { f.settle = 300 * time.Millisecond },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	var err error
	if f.speeds, err = parseFloats("--speeds", *speeds, false); err != nil {
		return nil, err
	}
	if f.slots, err = parseInts("--slots", *slots); err != nil {
		return nil, err
	}
	if f.loads, err = parseFloats("--loads", *loads, true); err != nil {
		return nil, err
	}
	if f.policies, err = parsePolicies("--policies", *policies, allPolicies); err != nil {
		return nil, err
	}
	if f.mtPolicies, err = parsePolicies("--mt-policies", *mtPolicies, allPolicies[1:]); err != nil {
		return nil, err
	}
	switch {
	case len(f.speeds) < 2 || len(f.speeds) != len(f.slots):
		return nil, usageError{errors.New("--speeds and --slots need one value per node, for at least 2 nodes")}
	case len(f.speeds) > 16:
		return nil, usageError{errors.New("at most 16 nodes")}
	case len(f.loads) == 0 && len(f.mtPolicies) == 0:
		return nil, usageError{errors.New("nothing to measure: give --loads or --mt-policies")}
	case f.ttft < 0 || f.promptCost < 0 || f.cachedCost < 0 || f.tokenRate <= 0:
		return nil, usageError{errors.New("--ttft and the token costs must not be negative, --tokens-per-second must be positive")}
	case f.answerTokens < 1 || f.systemWords < 1:
		return nil, usageError{errors.New("--answer-tokens and --system-words must be at least 1")}
	case f.promptWords < 2 || f.userWords < 3:
		return nil, usageError{errors.New("--prompt-words must be at least 2 and --user-words at least 3 (the first words make each prompt unique)")}
	case f.duration <= 0 || f.timeout <= 0 || f.mtDuration <= 0 || f.warmup < 0 || f.settle < 0 || f.mtDrain < 0 || f.think < 0:
		return nil, usageError{errors.New("durations must be positive (--warmup, --settle, --mt-drain, --think: not negative)")}
	case f.turns < 2:
		return nil, usageError{errors.New("--turns must be at least 2")}
	case f.mtLoad <= 0 || f.mtLoad > 200:
		return nil, usageError{errors.New("--mt-load must be in (0, 200] percent")}
	case f.maxRequests < 0 || f.queueMax < 0 || f.loadInterval < 0 || f.queueTimeout < 0:
		return nil, usageError{errors.New("--max-requests and the sovra settings must not be negative")}
	}
	for _, l := range f.loads {
		if l > 200 {
			return nil, usageError{fmt.Errorf("--loads: %g%% is more than twice the capacity", l)}
		}
	}
	for _, s := range f.slots {
		if s < 1 || s > 64 {
			return nil, usageError{fmt.Errorf("--slots: %d is not in [1, 64]", s)}
		}
	}
	return f, nil
}

func parseFloats(name, s string, allowEmpty bool) ([]float64, error) {
	var out []float64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, err := strconv.ParseFloat(part, 64)
		if err != nil || v <= 0 {
			return nil, usageError{fmt.Errorf("%s: %q is not a positive number", name, part)}
		}
		out = append(out, v)
	}
	if len(out) == 0 && !allowEmpty {
		return nil, usageError{fmt.Errorf("%s: no values", name)}
	}
	return out, nil
}

func parseInts(name, s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, err := strconv.Atoi(part)
		if err != nil {
			return nil, usageError{fmt.Errorf("%s: %q is not an integer", name, part)}
		}
		out = append(out, v)
	}
	return out, nil
}

func parsePolicies(name, s string, known []string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !slices.Contains(known, part) {
			return nil, usageError{fmt.Errorf("%s: unknown policy %q (known: %s)", name, part, strings.Join(known, ", "))}
		}
		if !slices.Contains(out, part) {
			out = append(out, part)
		}
	}
	return out, nil
}

// runRouteBench runs `sovra-bench route`.
func runRouteBench(ctx context.Context, args []string) error {
	if wantsMatrix(args) {
		return runRouteMatrix(ctx, args)
	}
	f, err := parseRouteFlags(args)
	if err != nil {
		return err
	}
	setup := newRouteSetup(f)
	rep := &routeReport{
		Setup: setup, Targets: f.targets,
		Settings: map[string]string{
			"duration": f.duration.String(), "warmup": f.warmup.String(), "timeout": f.timeout.String(),
			"seed": strconv.FormatUint(f.seed, 10), "cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(),
			"mt_duration": f.mtDuration.String(), "think": f.think.String(),
		},
	}
	if l1, text, err := bench.LoadAverage(); err == nil {
		rep.Settings["loadavg_start"] = strings.ReplaceAll(text, " ", "/")
		if l1 > float64(runtime.NumCPU())/2 {
			progress("warning: load average %s on %d CPUs before the run: other work competes for the CPUs", text, runtime.NumCPU())
		}
	}
	progress("%s", setup.summaryLine())
	if f.queueTimeout > 0 && f.timeout < f.queueTimeout+2*setup.maxService()+time.Second {
		progress("warning: --timeout %s leaves little room after --queue-timeout %s: clients may hang up on streams sovra has started", f.timeout, f.queueTimeout)
	}
	rep.Settings["queue_timeout"] = sovraSetting(f.queueTimeout.String(), f.queueTimeout == 0)
	rep.Settings["queue_max"] = sovraSetting(strconv.Itoa(f.queueMax), f.queueMax == 0)
	rep.Settings["load_interval"] = sovraSetting(f.loadInterval.String(), f.loadInterval == 0)

	r, err := newRouteRig(ctx, f, setup)
	if r != nil {
		defer r.tearDown(f.keep)
	}
	if err != nil {
		return err
	}
	rep.Features = r.features
	if err := measureRoutes(ctx, f, r, rep); err != nil {
		return err
	}
	if _, text, err := bench.LoadAverage(); err == nil {
		rep.Settings["loadavg_end"] = strings.ReplaceAll(text, " ", "/")
	}
	rep.evaluate()
	return printReport(rep, f.json, f.strict, func() { r.tearDown(f.keep) })
}

func sovraSetting(v string, isDefault bool) string {
	if isDefault {
		return "sovra-default"
	}
	return v
}

// measureRoutes runs every policy's points and conversations, in order,
// appending them to rep as they complete. The oracle's points run
// interleaved with those of the first sovra policy measured (while its
// cluster is up and idle for the oracle), load by load with the same
// arrival times, so that a change in the machine's background load during
// the run does not fall between the two.
func measureRoutes(ctx context.Context, f *routeFlags, r *routeRig, rep *routeReport) error {
	runnable := func(pol string) bool { return pol == policyRR || r.features.RoutingPolicy }
	pairWith := ""
	if slices.Contains(f.policies, policyOracle) && len(f.loads) > 0 {
		for _, pol := range f.policies {
			if pol != policyOracle && runnable(pol) {
				pairWith = pol
				break
			}
		}
	}
	for _, pol := range f.policies {
		if !runnable(pol) {
			rep.note("%s skipped: this sovra has no --routing-policy flag", pol)
			continue
		}
		if pol == policyOracle {
			if pairWith == "" {
				if err := runPolicy(ctx, r, rep, r.newDriver(pol, directEntries(r)), nil, false); err != nil {
					return err
				}
			}
			continue
		}
		entries, err := r.startCluster(ctx, pol)
		if err != nil {
			return err
		}
		var oracle *driver
		if pol == pairWith {
			oracle = r.newDriver(policyOracle, directEntries(r))
			rep.note("the oracle's points ran interleaved with %s's, load by load with the same arrival times, while the %s cluster was up (and idle for them)", pol, pol)
		}
		err = runPolicy(ctx, r, rep, r.newDriver(pol, entries), oracle, slices.Contains(f.mtPolicies, pol))
		r.stopCluster()
		if err != nil {
			return err
		}
	}
	for _, pol := range f.mtPolicies {
		if !slices.Contains(f.policies, pol) {
			rep.note("multi-turn workload of %s skipped: %s is not among --policies", pol, pol)
		}
	}
	return ctx.Err()
}

// runPolicy measures one policy: a warm-up, the single-turn points (each
// after the same point of the oracle when oracle is not nil) and, when mt
// is set, the multi-turn workload.
func runPolicy(ctx context.Context, r *routeRig, rep *routeReport, d, oracle *driver, mt bool) error {
	f := r.f
	if f.warmup > 0 {
		progress("%-17s warm-up for %s at 50%%", d.policy, f.warmup)
		if _, err := d.point(ctx, 50, f.warmup, f.seed+999); err != nil {
			return err
		}
	}
	for i, load := range f.loads {
		for _, x := range []*driver{oracle, d} {
			if x == nil {
				continue
			}
			progress("%-17s %3g%% load: %.2f req/s for %s", x.policy, load, r.setup.rate(load), f.duration)
			p, err := x.point(ctx, load, f.duration, f.seed+uint64(i))
			if err != nil {
				return err
			}
			p.logSummary()
			rep.Points = append(rep.Points, p)
		}
	}
	if mt {
		progress("%-17s multi-turn: %d-turn conversations, %.2f/s for %s (%.2f req/s)", d.policy, f.turns,
			r.setup.convRate(f.mtLoad, f.turns), f.mtDuration, r.setup.convRate(f.mtLoad, f.turns)*float64(f.turns))
		c, err := d.conversations(ctx)
		if err != nil {
			return err
		}
		c.logSummary()
		rep.Convs = append(rep.Convs, c)
	}
	return nil
}
