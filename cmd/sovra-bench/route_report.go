package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sovra/sovra/internal/bench"
)

// simFigures are what the simulators' logs say about a point.
type simFigures struct {
	// Requests counts the chat requests each simulator received.
	Requests map[string]int `json:"requests"`
	// Queued counts the requests whose first token came more than
	// simQueueThreshold after their prefill time: they waited at the
	// simulator for a slot. QueueMean and QueueMax are over those.
	Queued    int           `json:"queued"`
	QueueMean time.Duration `json:"queue_mean_ns"`
	QueueMax  time.Duration `json:"queue_max_ns"`
	// FollowUps counts the multi-turn requests after a first turn, and
	// CacheHits those that found their whole history in the prefix cache.
	FollowUps int `json:"follow_ups,omitempty"`
	CacheHits int `json:"cache_hits,omitempty"`
	// Unexpected counts single-turn requests whose prompt the simulator
	// counted otherwise than the oracle's service times assume.
	Unexpected int `json:"unexpected_prompts,omitempty"`
}

// routePoint is one policy at one offered load of the single-turn
// workload.
type routePoint struct {
	Policy  string             `json:"policy"`
	Load    float64            `json:"load"`
	Rate    float64            `json:"rate"`
	Figures bench.RouteFigures `json:"figures"`
	Sim     simFigures         `json:"sim"`
	// Shares are the nodes' shares of the successful requests (and their
	// load against their capacity); ShareFrom says where the node of each
	// request came from.
	Shares    []bench.NodeLoad `json:"shares"`
	ShareFrom string           `json:"share_from"`
	Elapsed   time.Duration    `json:"elapsed_ns"`
	MaxLag    time.Duration    `json:"max_lag_ns"`
	samples   []bench.RouteSample
}

// convPoint is one policy's run of the multi-turn workload.
type convPoint struct {
	Policy        string             `json:"policy"`
	ConvRate      float64            `json:"conversation_rate"`
	Rate          float64            `json:"rate"`
	Conversations int                `json:"conversations"`
	Cut           int                `json:"cut"`
	Figures       bench.RouteFigures `json:"figures"`
	// FollowUps are the follow-up turns with a known node after a
	// successful turn; SameNode those served by the previous turn's node.
	FollowUps int        `json:"follow_ups"`
	SameNode  int        `json:"same_node"`
	Sim       simFigures `json:"sim"`
	// Loads are the nodes' loads over the turns that started in the
	// steady state, from SteadyFrom to SteadyTo after the first arrival;
	// SteadyTurns counts those turns. LoadFrom says where their nodes came
	// from.
	Loads       []bench.NodeLoad `json:"loads"`
	LoadFrom    string           `json:"load_from"`
	SteadyFrom  time.Duration    `json:"steady_from_ns"`
	SteadyTo    time.Duration    `json:"steady_to_ns"`
	SteadyTurns int              `json:"steady_turns"`
	Elapsed     time.Duration    `json:"elapsed_ns"`
	samples     []bench.RouteSample
}

// Where the node of a request comes from.
const (
	fromHeader = "Sovra-Node"
	fromSim    = "simulator logs"
)

// nodeCounts returns the requests per node from the Sovra-Node headers
// when every successful answer had one, else from the simulators' logs.
func nodeCounts(fig bench.RouteFigures, sim simFigures, direct bool) (map[string]int, string) {
	known := 0
	for _, n := range fig.Nodes {
		known += n
	}
	if direct || (fig.OK > 0 && known == fig.OK) {
		return fig.Nodes, fromHeader
	}
	return sim.Requests, fromSim
}

func (p *routePoint) setShares(s routeSetup, direct bool) {
	counts, from := nodeCounts(p.Figures, p.Sim, direct)
	if direct {
		from = "oracle"
	}
	p.Shares, p.ShareFrom = bench.NodeLoads(s.ids(), counts, s.capacities(false)), from
}

func (c *convPoint) setLoads(s routeSetup) {
	var steady []bench.RouteSample
	for _, x := range c.samples {
		if x.Start >= c.SteadyFrom && x.Start < c.SteadyTo {
			steady = append(steady, x)
		}
	}
	fig := bench.SummarizeRoute(steady)
	c.SteadyTurns = fig.OK
	counts, from := nodeCounts(fig, c.Sim, false)
	if from == fromSim {
		from += " (whole run)"
	}
	c.Loads, c.LoadFrom = bench.NodeLoads(s.ids(), counts, s.capacities(true)), from
}

func (p *routePoint) logSummary() {
	f := p.Figures
	progress("  %d sent, %d ok, %d failed; TTFT mean %.0fms p99 %.0fms; queue p99 %s; simulator queued %d%s",
		f.Sent, f.OK, f.Errors, ms(f.TTFT.Mean), ms(f.TTFT.P99), queueCell(f, f.Queue.P99), p.Sim.Queued, firstErr(f))
}

func (c *convPoint) logSummary() {
	f := c.Figures
	progress("  %d conversations, %d turns ok, %d failed, %d cut; follow-ups on the previous node %s; TTFT mean %.0fms p99 %.0fms%s",
		c.Conversations, f.OK, f.Errors, c.Cut, pct(c.SameNode, c.FollowUps), ms(f.TTFT.Mean), ms(f.TTFT.P99), firstErr(f))
}

func firstErr(f bench.RouteFigures) string {
	if f.FirstError == "" {
		return ""
	}
	return "; first error: " + f.FirstError
}

// routeReport is the outcome of `sovra-bench route`.
type routeReport struct {
	Setup    routeSetup         `json:"setup"`
	Features sovraFeatures      `json:"sovra_flags"`
	Targets  routeTargets       `json:"targets"`
	Points   []*routePoint      `json:"points"`
	Convs    []*convPoint       `json:"conversations"`
	Checks   []bench.RouteCheck `json:"checks"`
	Notes    []string           `json:"notes"`
	Settings map[string]string  `json:"settings"`
}

func (r *routeReport) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// find returns the point of policy at load, or nil.
func (r *routeReport) find(policy string, load float64) *routePoint {
	for _, p := range r.Points {
		if p.Policy == policy && p.Load == load {
			return p
		}
	}
	return nil
}

// sortedPoints are the points by load, then in the order of allPolicies.
func (r *routeReport) sortedPoints() []*routePoint {
	out := slices.Clone(r.Points)
	slices.SortStableFunc(out, func(a, b *routePoint) int {
		if c := cmp.Compare(a.Load, b.Load); c != 0 {
			return c
		}
		return cmp.Compare(slices.Index(allPolicies, a.Policy), slices.Index(allPolicies, b.Policy))
	})
	return out
}

// ratios are p's mean and p99 TTFT over the oracle's at the same load and
// its p99 TTFT over least-connections'; 0 where unknown.
func (r *routeReport) ratios(p *routePoint) (mean, p99, p99LC float64) {
	if o := r.find(policyOracle, p.Load); o != nil && o != p {
		mean = bench.Ratio(p.Figures.TTFT.Mean, o.Figures.TTFT.Mean)
		p99 = bench.Ratio(p.Figures.TTFT.P99, o.Figures.TTFT.P99)
	}
	if lc := r.find(policyLC, p.Load); lc != nil && lc != p {
		p99LC = bench.Ratio(p.Figures.TTFT.P99, lc.Figures.TTFT.P99)
	}
	return mean, p99, p99LC
}

// evaluate derives the checks and the notes on what could not be
// measured.
func (r *routeReport) evaluate() {
	t := r.Targets
	r.Checks = nil
	ttf := r.find(policyTTF, t.Load)
	switch {
	case ttf == nil:
		r.note("TTFT targets not checked: ttf was not measured at %g%% load", t.Load)
	case ttf.Figures.OK == 0:
		r.note("TTFT targets not checked: no ttf request succeeded at %g%% load", t.Load)
	default:
		mean, p99, p99LC := r.ratios(ttf)
		at := fmt.Sprintf("at %g%%", t.Load)
		if mean == 0 {
			r.note("oracle targets not checked: the oracle was not measured at %g%% load", t.Load)
		} else {
			r.Checks = append(r.Checks,
				bench.NewRouteCheck("ttf mean TTFT "+at+" / oracle's", mean, t.MeanVsOracle, "x", false),
				bench.NewRouteCheck("ttf p99 TTFT "+at+" / oracle's", p99, t.P99VsOracle, "x", false))
		}
		if p99LC == 0 {
			r.note("least-connections target not checked: least-connections was not measured at %g%% load", t.Load)
		} else {
			r.Checks = append(r.Checks, bench.NewRouteCheck("ttf p99 TTFT "+at+" / least-connections'", p99LC, t.P99VsLC, "x", false))
		}
	}
	for _, p := range r.Points {
		if p.Policy == policyTTF {
			r.Checks = append(r.Checks, bench.NewRouteCheck(
				fmt.Sprintf("failed ttf requests at %g%%", p.Load), float64(p.Figures.Errors), 0, "", false))
		}
	}
	for _, c := range r.Convs {
		if c.Policy != policyTTF {
			continue
		}
		if c.FollowUps == 0 {
			r.note("affinity target not checked: no follow-up turn with a %s header succeeded", hdrNode)
		} else {
			r.Checks = append(r.Checks, bench.NewRouteCheck("ttf follow-ups on the previous turn's node",
				100*float64(c.SameNode)/float64(c.FollowUps), 100*t.Affinity, "%", true))
		}
		node, worst := bench.MaxRelative(c.Loads)
		r.Checks = append(r.Checks, bench.NewRouteCheck(
			fmt.Sprintf("ttf multi-turn: highest node load / cluster average (%s)", node), worst, t.MaxNodeLoad, "x", false))
	}
	r.noteSovra()
}

// maxLag is how late the load generator may start a request before the
// report says so.
const maxLag = 20 * time.Millisecond

// noteSovra adds notes on what the sovra under test lacked or did.
func (r *routeReport) noteSovra() {
	ft := r.Features
	if !ft.RoutingPolicy {
		r.note("this sovra has no --routing-policy: \"round-robin\" ran with its default routing (each node serves the requests it receives on its own replica), which behind the benchmark's round-robin entry is round-robin")
	}
	if !ft.Slots {
		r.note("this sovra has no --slots: it admits every request at once and the simulators queue (see sim-queued)")
	}
	for _, p := range r.Points {
		f := p.Figures
		if p.Policy != policyOracle && f.OK > 0 && f.QueueKnown < f.OK {
			r.note("%s at %g%%: %d of %d answers had no %s header; queue figures are over the rest", p.Policy, p.Load, f.OK-f.QueueKnown, f.OK, hdrQueue)
		}
		if p.Sim.Queued > 0 {
			r.note("%s at %g%%: the simulators queued %d requests for a slot (mean %.0fms, max %.0fms): more requests reached an Ollama than it has slots, or one came as another was releasing its slot",
				p.Policy, p.Load, p.Sim.Queued, ms(p.Sim.QueueMean), ms(p.Sim.QueueMax))
		}
		if p.Sim.Unexpected > 0 {
			r.note("%s at %g%%: %d prompts did not cost what the oracle assumes (%d tokens, none cached)", p.Policy, p.Load, p.Sim.Unexpected, r.Setup.PromptTokens)
		}
		if p.Figures.Errors > 0 {
			r.note("%s at %g%%: first error: %s", p.Policy, p.Load, p.Figures.FirstError)
		}
		if p.MaxLag > maxLag {
			r.note("%s at %g%%: the load generator started a request %.0fms late: the machine was short of CPU", p.Policy, p.Load, ms(p.MaxLag))
		}
	}
	for _, c := range r.Convs {
		if c.Sim.Queued > 0 {
			r.note("%s multi-turn: the simulators queued %d requests (max %.0fms)", c.Policy, c.Sim.Queued, ms(c.Sim.QueueMax))
		}
		if c.Figures.Errors > 0 {
			r.note("%s multi-turn: first error: %s", c.Policy, c.Figures.FirstError)
		}
		if c.Cut > 0 {
			r.note("%s multi-turn: %d conversations stopped early, past --mt-duration + --mt-drain", c.Policy, c.Cut)
		}
	}
}

// Passed reports whether every check passed.
func (r *routeReport) Passed() bool {
	for _, c := range r.Checks {
		if !c.Pass {
			return false
		}
	}
	return true
}

// WriteTable prints the report.
func (r *routeReport) WriteTable(out io.Writer) {
	r.writeSetup(out)
	if len(r.Points) > 0 {
		r.writePoints(out)
	}
	if len(r.Convs) > 0 {
		r.writeConvs(out)
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(out, "Targets")
		for _, c := range r.Checks {
			fmt.Fprintln(out, "  "+c.String())
		}
		fmt.Fprintln(out)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(out, "Notes")
		for _, n := range r.Notes {
			fmt.Fprintln(out, "  - "+n)
		}
		fmt.Fprintln(out)
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(r.Settings)) {
		fmt.Fprintf(&b, " %s=%s", k, r.Settings[k])
	}
	fmt.Fprintf(out, "Settings:%s\n", b.String())
}

func (r *routeReport) writeSetup(out io.Writer) {
	s := r.Setup
	fmt.Fprintf(out, "Setup: %d nodes, each a sovra node beside its own simulated Ollama (ollama-sim); one deployment %q of %s\n", len(s.Nodes), s.Deployment, s.Model)
	fmt.Fprintf(out, "with one replica per node. Every answer is %d tokens; the single-turn prompt is %d tokens, never cached.\n", s.AnswerTokens, s.PromptTokens)
	fmt.Fprintln(out, "service = TTFT + prompt tokens x cost + (answer tokens - 1) / tokens per second; capacity = slots / service.")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tspeed\tslots\tTTFT\tprompt/token\tcached/token\ttokens/s\tprefill\tservice\tcapacity/s\tshare\tmulti-turn service\t")
	for _, n := range s.Nodes {
		fmt.Fprintf(tw, "%s\t%gx\t%d\t%s\t%s\t%s\t%g\t%s\t%s\t%.2f\t%.1f%%\t%s\t\n", n.ID, n.Speed, n.Slots,
			fmtDur(n.TTFT), fmtDur(n.PromptCost), fmtDur(n.CachedCost), n.TokenRate, fmtDur(n.Prefill), fmtDur(n.Service),
			n.Capacity, 100*n.Capacity/s.Capacity, fmtDur(n.MTService))
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "Total capacity: %.2f requests/s single-turn; %.2f requests/s multi-turn with the history cached (estimate).\n\n", s.Capacity, s.MTCapacity)
}

func (r *routeReport) writePoints(out io.Writer) {
	s := r.Setup
	fmt.Fprintf(out, "Single-turn streamed chat (%s, stream), open-loop Poisson arrivals at a share of capacity, sent round-robin to the\n", s.Endpoint)
	fmt.Fprintln(out, "sovra nodes; the oracle sends straight to the simulators. TTFT: client-measured, arrival to first token. queue: the")
	fmt.Fprintln(out, "oracle's own queue, or sovra's Sovra-Queue-Ms. /oracle, /LC: TTFT over the oracle's and least-connections' at the same load.")
	fmt.Fprintf(out, "retried: answers with Sovra-Attempts > 1. sim-q: requests that waited > %s for a slot at a simulator.\n", simQueueThreshold)
	fmt.Fprintln(out, "Node columns: each node's share of the successful requests.")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "load\trate/s\tpolicy\tsent\tok\terr\tretried\tqueue mean\tqueue p99\tTTFT mean\tTTFT p99\tmean/oracle\tp99/oracle\tp99/LC\tsim-q"
	for _, n := range s.Nodes {
		head += "\t" + n.ID
	}
	fmt.Fprintln(tw, head+"\tnodes from\t")
	for _, p := range r.sortedPoints() {
		f := p.Figures
		mean, p99, lc := r.ratios(p)
		row := fmt.Sprintf("%g%%\t%.2f\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d",
			p.Load, p.Rate, p.Policy, f.Sent, f.OK, f.Errors, f.Retried, queueCell(f, f.Queue.Mean), queueCell(f, f.Queue.P99),
			fmtDur(f.TTFT.Mean), fmtDur(f.TTFT.P99), bench.FormatRatio(mean), bench.FormatRatio(p99), bench.FormatRatio(lc), p.Sim.Queued)
		for _, l := range p.Shares {
			row += fmt.Sprintf("\t%.1f%%", 100*l.Share)
		}
		fmt.Fprintln(tw, row+"\t"+p.ShareFrom+"\t")
	}
	_ = tw.Flush()
	var caps []string
	for _, n := range s.Nodes {
		caps = append(caps, fmt.Sprintf("%s %.1f%%", n.ID, 100*n.Capacity/s.Capacity))
	}
	fmt.Fprintf(out, "Capacity shares for comparison: %s.\n\n", strings.Join(caps, ", "))
}

func (r *routeReport) writeConvs(out io.Writer) {
	s := r.Setup
	fmt.Fprintf(out, "Multi-turn chat (%s, stream): %d-turn conversations (system prompt %d tokens shared by all, user turns %d tokens,\n", s.Endpoint, s.Turns, s.SystemTokens, s.UserTokens)
	fmt.Fprintf(out, "answers %d tokens), each turn sending the whole history; conversations arrive as a Poisson stream at %g%% of the\n", s.AnswerTokens, s.MTLoad)
	fmt.Fprintln(out, "multi-turn capacity, sent round-robin to the nodes turn by turn; the simulators keep a prefix cache. same node: follow-up")
	fmt.Fprintln(out, "turns served by the node of the previous turn (Sovra-Node); cached: follow-ups whose history the serving simulator had")
	fmt.Fprintln(out, "cached. Node columns: load = share of the turns that started in the steady state / share of capacity, i.e. relative")
	fmt.Fprintln(out, "to the cluster's average load (1 = the node's fair part).")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "policy	conv/s	convs	turns	ok	err	cut	retried	same node	cached	TTFT mean	TTFT p99	steady	turns"
	for _, n := range s.Nodes {
		head += "	" + n.ID
	}
	fmt.Fprintln(tw, head+"	max	nodes from	")
	for _, c := range r.Convs {
		f := c.Figures
		row := fmt.Sprintf("%s	%.2f	%d	%d	%d	%d	%d	%d	%s	%s	%s	%s	%s-%s	%d", c.Policy, c.ConvRate, c.Conversations, f.Sent, f.OK, f.Errors, c.Cut,
			f.Retried, pct(c.SameNode, c.FollowUps), pct(c.Sim.CacheHits, c.Sim.FollowUps), fmtDur(f.TTFT.Mean), fmtDur(f.TTFT.P99),
			fmtSec(c.SteadyFrom), fmtSec(c.SteadyTo), c.SteadyTurns)
		for _, l := range c.Loads {
			row += fmt.Sprintf("\t%.2fx", l.Relative)
		}
		_, worst := bench.MaxRelative(c.Loads)
		fmt.Fprintln(tw, row+fmt.Sprintf("\t%.2fx\t%s\t", worst, c.LoadFrom))
	}
	_ = tw.Flush()
	fmt.Fprintln(out)
}

func fmtSec(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// queueCell prints a queue figure, or "n/a" when no answer reported one.
func queueCell(f bench.RouteFigures, d time.Duration) string {
	if f.QueueKnown == 0 {
		return "n/a"
	}
	return fmtDur(d)
}

// pct prints n/of as a percentage, or "n/a" when of is zero.
func pct(n, of int) string {
	if of == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// fmtDur prints a duration in milliseconds, with one decimal below 10ms.
func fmtDur(d time.Duration) string {
	v := ms(d)
	switch {
	case v == 0:
		return "0ms"
	case v < 1:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case v < 10:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.0fms", v)
	}
}
