package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sovra/sovra/internal/bench"
)

// matrixCell is one combination of backends, request type, prompt mix and
// load, with every policy's run of it.
type matrixCell struct {
	Backends string    `json:"backends"`
	Speeds   []float64 `json:"speeds"`
	Request  string    `json:"request"`
	Prompts  string    `json:"prompts"`
	Load     float64   `json:"load"`
	// Rate is the requests per second offered; ConvRate the
	// conversations per second (multiturn).
	Rate     float64      `json:"rate"`
	ConvRate float64      `json:"conversation_rate,omitempty"`
	Runs     []*matrixRun `json:"runs"`
	seed     uint64
}

// matrixRun is one policy's run of a cell, through one entry pattern for
// sovra.
type matrixRun struct {
	Policy  string             `json:"policy"`
	Entry   string             `json:"entry,omitempty"`
	Figures bench.RouteFigures `json:"figures"`
	Sim     matrixSim          `json:"sim"`
	MaxLag  time.Duration      `json:"max_lag_ns"`
	// Redone counts rounds run again because the load generator lagged.
	Redone int `json:"redone,omitempty"`
	// Misrouted is the share of requests another node would have
	// finished a tenth sooner, judged afterwards; Regret the mean time
	// the best node would have saved (see bench.Misroutes).
	Misrouted float64       `json:"misrouted"`
	Regret    time.Duration `json:"regret_ns"`
	// Ratios are the run's figures over the oracle's and
	// least-connections' (0: not measured); Misses the targets missed.
	Ratios  matrixRatios `json:"ratios"`
	Misses  []string     `json:"misses,omitempty"`
	Checked bool         `json:"checked"`
	// Learned is what the first sovra node learned of each replica by
	// the end of the run.
	Learned map[string]learnedReplica `json:"learned,omitempty"`
	samples []bench.RouteSample
}

// matrixRatios are a run's mean and p99 latency and TTFT over a baseline's.
type matrixRatios struct {
	Oracle ratioSet `json:"oracle"`
	// LC is over least-connections deployed the way the run entered:
	// lc-rr (a proxy per node, requests entering them in turn) for
	// sovra's rr-entry runs, the single lc proxy that sees every request
	// for the others, or it when lc-rr was not run. LCBase names it.
	LC     ratioSet `json:"least_connections"`
	LCBase string   `json:"least_connections_baseline,omitempty"`
	// LCGlobal is an rr-entry run over the single lc proxy, reported
	// beside LC; not held to a target.
	LCGlobal ratioSet `json:"least_connections_global,omitzero"`
}

type ratioSet struct {
	Mean     float64 `json:"latency_mean"`
	P99      float64 `json:"latency_p99"`
	TTFTMean float64 `json:"ttft_mean,omitempty"`
	TTFTP99  float64 `json:"ttft_p99,omitempty"`
}

// matrixSim is what the simulators logged of a run's measured window.
type matrixSim struct {
	Requests map[string]int `json:"requests"`
	// Queued: requests that waited at a simulator for a slot.
	Queued int `json:"queued"`
	// Handoffs count the requests that started on a simulator within
	// handoffGap of the previous one's end (one slot: they were waiting
	// in front of it), and Handoff is their mean idle time: what passing
	// a waiting request to a freed slot costs.
	Handoffs int           `json:"handoffs,omitempty"`
	Handoff  time.Duration `json:"handoff_ns,omitempty"`
	// FollowUps are multiturn requests after a first turn (shared: every
	// request); Hits those that found their history (shared: the system
	// prompt) in the serving simulator's cache; Saved the prefill time
	// the cache saved per follow-up, against a replica holding only the
	// system prompt.
	FollowUps int           `json:"follow_ups,omitempty"`
	Hits      int           `json:"hits,omitempty"`
	Saved     time.Duration `json:"saved_per_follow_up_ns,omitempty"`
}

// matrixReport is the outcome of `sovra-bench route --matrix`.
type matrixReport struct {
	Targets  matrixTargets     `json:"targets"`
	Cells    []*matrixCell     `json:"cells"`
	Notes    []string          `json:"notes"`
	Settings map[string]string `json:"settings"`
	lagLimit time.Duration
}

func (c *matrixCell) label() string {
	return fmt.Sprintf("%s %s %s %g%%", c.Backends, c.Request, c.Prompts, c.Load)
}

// find returns the run of policy (any entry), or nil.
func (c *matrixCell) find(policy string) *matrixRun {
	for _, r := range c.Runs {
		if r.Policy == policy {
			return r
		}
	}
	return nil
}

func (r *matrixRun) logSummary() {
	f := r.Figures
	progress("  %d sent, %d ok, %d failed; latency mean %s p99 %s; TTFT mean %s p99 %s; sim-queued %d; handoffs %d of %s%s",
		f.Sent, f.OK, f.Errors, fmtDur(f.Latency.Mean), fmtDur(f.Latency.P99), fmtDur(f.TTFT.Mean), fmtDur(f.TTFT.P99), r.Sim.Queued,
		r.Sim.Handoffs, fmtDur(r.Sim.Handoff), firstErr(f))
	if len(r.Learned) > 0 {
		var parts []string
		for _, n := range slices.Sorted(maps.Keys(r.Learned)) {
			l := r.Learned[n]
			parts = append(parts, fmt.Sprintf("%s %.0fms (%.1fms/KiB, %.2f KiB)", n, l.ServiceMs, l.PrefillMsPerKiB, l.PromptKiB))
		}
		progress("  learned: %s", strings.Join(parts, ", "))
	}
}

// pool adds another round's run of the same policy: its samples, its
// simulator figures, and its misroutes weighted by requests.
func (r *matrixRun) pool(o *matrixRun) {
	n, m := float64(len(r.samples)), float64(len(o.samples))
	if n+m > 0 {
		r.Misrouted = (r.Misrouted*n + o.Misrouted*m) / (n + m)
		r.Regret = time.Duration((float64(r.Regret)*n + float64(o.Regret)*m) / (n + m))
	}
	r.samples = append(r.samples, o.samples...)
	r.Figures = bench.SummarizeRoute(r.samples)
	r.MaxLag = max(r.MaxLag, o.MaxLag)
	r.Redone += o.Redone
	r.Learned = o.Learned
	r.Sim.pool(o.Sim)
}

func (s *matrixSim) pool(o matrixSim) {
	for n, v := range o.Requests {
		s.Requests[n] += v
	}
	if f := s.FollowUps + o.FollowUps; f > 0 {
		s.Saved = (s.Saved*time.Duration(s.FollowUps) + o.Saved*time.Duration(o.FollowUps)) / time.Duration(f)
	}
	if h := s.Handoffs + o.Handoffs; h > 0 {
		s.Handoff = (s.Handoff*time.Duration(s.Handoffs) + o.Handoff*time.Duration(o.Handoffs)) / time.Duration(h)
	}
	s.Handoffs += o.Handoffs
	s.Queued += o.Queued
	s.FollowUps += o.FollowUps
	s.Hits += o.Hits
}

// ratiosOver are a run's figures over a baseline's (zero where b is nil
// or has nothing).
func ratiosOver(r, b *matrixRun) ratioSet {
	if b == nil || b == r || b.Figures.OK == 0 {
		return ratioSet{}
	}
	f, g := r.Figures, b.Figures
	return ratioSet{Mean: bench.Ratio(f.Latency.Mean, g.Latency.Mean), P99: bench.Ratio(f.Latency.P99, g.Latency.P99),
		TTFTMean: bench.Ratio(f.TTFT.Mean, g.TTFT.Mean), TTFTP99: bench.Ratio(f.TTFT.P99, g.TTFT.P99)}
}

// lcBaseline is the least-connections run that r's /lc ratios are over
// in cell c: lc-rr for sovra's rr-entry runs when it ran, else the
// single lc proxy; fallback says lc-rr should have been but was not.
func (c *matrixCell) lcBaseline(r *matrixRun) (b *matrixRun, fallback bool) {
	lc := c.find(policyLCProxy)
	if r.Entry != entryRR {
		return lc, false
	}
	if rr := c.find(policyLCEntry); rr != nil && rr.Figures.OK > 0 {
		return rr, false
	}
	return lc, lc != nil
}

// evaluate computes every run's ratios and checks sovra's runs at the
// target load.
func (rep *matrixReport) evaluate() {
	var fellBack []string
	for _, c := range rep.Cells {
		o, lc := c.find(policyOracle), c.find(policyLCProxy)
		for _, r := range c.Runs {
			base, fallback := c.lcBaseline(r)
			r.Ratios = matrixRatios{Oracle: ratiosOver(r, o), LC: ratiosOver(r, base)}
			if r.Ratios.LC != (ratioSet{}) {
				r.Ratios.LCBase = base.Policy
			}
			if r.Entry == entryRR {
				r.Ratios.LCGlobal = ratiosOver(r, lc)
			}
			if fallback && !slices.Contains(fellBack, c.label()) {
				fellBack = append(fellBack, c.label())
			}
			if !isBaseline(r.Policy) && c.Load == rep.Targets.Load {
				r.check(rep.Targets, c.Request == reqStream)
			}
			if r.Figures.Errors > 0 {
				rep.note("%s %s%s: %d failed; first: %s", c.label(), r.Policy, entryLabel(r.Entry), r.Figures.Errors, r.Figures.FirstError)
			}
			if r.MaxLag > rep.lagLimit {
				rep.note("%s %s%s: the load generator started a request %.0fms late even after %d rounds run again: the machine was short of CPU", c.label(), r.Policy, entryLabel(r.Entry), ms(r.MaxLag), r.Redone)
			} else if r.Redone > 0 {
				rep.note("%s %s%s: %d rounds run again because the load generator lagged", c.label(), r.Policy, entryLabel(r.Entry), r.Redone)
			}
		}
	}
	if len(fellBack) > 0 {
		rep.note("%s was not run in %s: sovra's rr-entry /lc ratios and target there are over the single %s proxy that sees every request, not least-connections deployed per node",
			policyLCEntry, strings.Join(fellBack, "; "), policyLCProxy)
	}
}

// check holds the run against the targets: latency (and TTFT for
// streams) against the oracle's and least-connections'.
func (r *matrixRun) check(t matrixTargets, stream bool) {
	r.Checked = true
	miss := func(name string, v, limit float64) {
		if v > limit {
			r.Misses = append(r.Misses, name)
		}
	}
	o, lc := r.Ratios.Oracle, r.Ratios.LC
	miss("mean/oracle", o.Mean, t.MeanVsOracle)
	miss("p99/oracle", o.P99, t.P99VsOracle)
	miss("mean/LC", lc.Mean, t.VsLC)
	miss("p99/LC", lc.P99, t.VsLC)
	if stream {
		miss("ttft-mean/oracle", o.TTFTMean, t.MeanVsOracle)
		miss("ttft-p99/oracle", o.TTFTP99, t.P99VsOracle)
		miss("ttft-mean/LC", lc.TTFTMean, t.VsLC)
		miss("ttft-p99/LC", lc.TTFTP99, t.VsLC)
	}
	if r.Figures.Errors > 0 {
		r.Misses = append(r.Misses, "errors")
	}
}

func (rep *matrixReport) note(format string, args ...any) {
	rep.Notes = append(rep.Notes, fmt.Sprintf(format, args...))
}

// Passed reports whether every checked run met every target.
func (rep *matrixReport) Passed() bool {
	for _, c := range rep.Cells {
		for _, r := range c.Runs {
			if len(r.Misses) > 0 {
				return false
			}
		}
	}
	return true
}

// WriteTable prints one table per backend set, request type and prompt
// mix, a row per run, then the target summary.
func (rep *matrixReport) WriteTable(out io.Writer) {
	fmt.Fprintln(out, "Routing matrix: open-loop Poisson arrivals at a share of each workload's capacity; every backend a simulated Ollama.")
	fmt.Fprintln(out, "lat: arrival to the answer's end; ttft: to its first text (streams). /o: over the oracle's figure in the same cell.")
	fmt.Fprintln(out, "/lc: over least-connections deployed the way the run entered, named in column lc: for entry rr, lc-rr (a")
	fmt.Fprintln(out, "least-connections proxy per node, each counting only its own requests, requests entering them in turn); for entry")
	fmt.Fprintln(out, "one and the baselines, lc (one proxy that sees every request). /glc: entry rr over that single lc, shown, not a")
	fmt.Fprintln(out, "target. hit: share of follow-ups (shared: requests) whose prefix the serving backend had cached; saved: prefill")
	fmt.Fprintln(out, "time the cache saved per follow-up. aff: share of sovra's decisions by affinity. nodes: share of requests per node.")
	var group string
	var tw *tabwriter.Writer
	for _, c := range rep.Cells {
		g := fmt.Sprintf("%s backends (speeds %s), %s, %s prompts", c.Backends, joinFloats(c.Speeds), c.Request, c.Prompts)
		if g != group {
			if tw != nil {
				_ = tw.Flush()
			}
			group = g
			fmt.Fprintf(out, "\n%s\n", g)
			tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, matrixHeader(c.Request == reqStream))
		}
		for _, r := range c.Runs {
			fmt.Fprintln(tw, matrixRow(c, r))
		}
	}
	if tw != nil {
		_ = tw.Flush()
	}
	rep.writeSummary(out)
}

func matrixHeader(stream bool) string {
	h := "load\trate/s\tpolicy\tentry\tok\terr\tlc\tlat mean\tlat p99\t/o mean\t/o p99\t/lc mean\t/lc p99\t/glc mean\t/glc p99"
	if stream {
		h += "\tttft mean\tttft p99\t/o mean\t/o p99\t/lc mean\t/lc p99\t/glc mean\t/glc p99"
	}
	return h + "\tmis\tregret\thit\tsaved\taff\tnodes\ttarget\t"
}

func matrixRow(c *matrixCell, r *matrixRun) string {
	f := r.Figures
	o, lc, g := r.Ratios.Oracle, r.Ratios.LC, r.Ratios.LCGlobal
	entry, base := r.Entry, r.Ratios.LCBase
	if entry == "" {
		entry = "-"
	}
	if base == "" {
		base = "-"
	}
	row := fmt.Sprintf("%g%%\t%.2f\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", c.Load, c.Rate, r.Policy, entry, f.OK, f.Errors, base,
		fmtDur(f.Latency.Mean), fmtDur(f.Latency.P99), bench.FormatRatio(o.Mean), bench.FormatRatio(o.P99),
		bench.FormatRatio(lc.Mean), bench.FormatRatio(lc.P99), bench.FormatRatio(g.Mean), bench.FormatRatio(g.P99))
	if c.Request == reqStream {
		row += fmt.Sprintf("\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", fmtDur(f.TTFT.Mean), fmtDur(f.TTFT.P99), bench.FormatRatio(o.TTFTMean),
			bench.FormatRatio(o.TTFTP99), bench.FormatRatio(lc.TTFTMean), bench.FormatRatio(lc.TTFTP99),
			bench.FormatRatio(g.TTFTMean), bench.FormatRatio(g.TTFTP99))
	}
	hit, saved := "-", "-"
	if r.Sim.FollowUps > 0 {
		hit = pct(r.Sim.Hits, r.Sim.FollowUps)
	}
	if c.Prompts == mixMultiTurn && r.Sim.FollowUps > 0 {
		saved = fmtDur(r.Sim.Saved)
	}
	aff := "-"
	if f.OK > 0 && !isBaseline(r.Policy) {
		aff = pct(f.Routes["affinity"], f.OK)
	}
	return row + fmt.Sprintf("\t%.0f%%\t%s\t%s\t%s\t%s\t%s\t%s\t", 100*r.Misrouted, fmtDur(r.Regret), hit, saved, aff, nodeShares(f), verdict(r))
}

// nodeShares prints each node's share of the successful requests.
func nodeShares(f bench.RouteFigures) string {
	if f.OK == 0 {
		return "-"
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(f.Nodes)) {
		parts = append(parts, fmt.Sprintf("%.0f", 100*float64(f.Nodes[n])/float64(f.OK)))
	}
	return strings.Join(parts, "/")
}

func verdict(r *matrixRun) string {
	switch {
	case !r.Checked:
		return ""
	case len(r.Misses) == 0:
		return "PASS"
	}
	return "MISS " + strings.Join(r.Misses, ",")
}

func joinFloats(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%g", x)
	}
	return strings.Join(parts, ":")
}

// writeSummary lists the checked runs' verdicts, the notes and the
// settings.
func (rep *matrixReport) writeSummary(out io.Writer) {
	t := rep.Targets
	fmt.Fprintf(out, "\nTargets at %g%% load: latency mean <= %.2fx and p99 <= %.2fx the oracle's, both <= %.2fx least-connections' deployed like the entry (lc-rr for entry rr, lc for entry one; and TTFT alike for streams)\n",
		t.Load, t.MeanVsOracle, t.P99VsOracle, t.VsLC)
	pass, checked := 0, 0
	for _, c := range rep.Cells {
		for _, r := range c.Runs {
			if !r.Checked {
				continue
			}
			checked++
			if len(r.Misses) == 0 {
				pass++
			}
			fmt.Fprintf(out, "  %-34s %-4s %-3s vs %-5s %s\n", c.label(), r.Policy, r.Entry, r.Ratios.LCBase, verdict(r))
		}
	}
	fmt.Fprintf(out, "  %d of %d checked runs met every target\n", pass, checked)
	if len(rep.Notes) > 0 {
		fmt.Fprintln(out, "Notes")
		for _, n := range rep.Notes {
			fmt.Fprintln(out, "  - "+n)
		}
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(rep.Settings)) {
		fmt.Fprintf(&b, " %s=%s", k, rep.Settings[k])
	}
	fmt.Fprintf(out, "Settings:%s\n", b.String())
}
