package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Phase is one measured run: a target under a load, with the CPU time each
// process used meanwhile.
type Phase struct {
	// Stream tells the streamed phases from the unary ones.
	Stream bool `json:"stream"`
	// Rate is the request rate of the schedule, per second (open loop).
	Rate float64 `json:"rate"`
	// Clients is the number of clients of a closed loop (Rate is 0).
	Clients int `json:"clients,omitempty"`
	// Server names the process that answered the target: the one whose
	// CPU time is charged to its requests.
	Server string  `json:"server"`
	Result *Result `json:"result"`
	// CPU is the CPU time each process used during the phase.
	CPU map[string]time.Duration `json:"cpu_ns"`
	// SimEvents is the number of stream messages the simulated Ollama sent
	// for the phase's requests; zero when unknown.
	SimEvents int `json:"sim_events,omitempty"`
	// Figures are derived by Report.Evaluate.
	Figures *Figures `json:"figures,omitempty"`
}

// Add merges o, a round of the same target under the same load, into p.
func (p *Phase) Add(o *Phase) {
	p.Result.Add(o.Result)
	if p.CPU == nil {
		p.CPU = map[string]time.Duration{}
	}
	for name, d := range o.CPU {
		p.CPU[name] += d
	}
	p.SimEvents += o.SimEvents
}

// Figures are the numbers a report prints for one phase.
type Figures struct {
	Latency Summary  `json:"latency"`
	TTFT    *Summary `json:"ttft,omitempty"`
	// Added* are the phase's percentiles minus the direct phase's (latency
	// for unary phases, time to first token for streams); absent for the
	// direct phase itself.
	AddedP50 *time.Duration `json:"added_p50_ns,omitempty"`
	AddedP99 *time.Duration `json:"added_p99_ns,omitempty"`
	// CPUPerRequest and CPUPerEvent are the answering process's CPU time
	// per request sent and per stream event received.
	CPUPerRequest time.Duration `json:"cpu_per_request_ns"`
	CPUPerEvent   time.Duration `json:"cpu_per_event_ns,omitempty"`
	// CPUVsBaseline is CPU per request (per event for streams) divided by
	// the baseline proxy's; absent for the direct and baseline phases.
	CPUVsBaseline float64 `json:"cpu_vs_baseline,omitempty"`
	Completeness  float64 `json:"completeness,omitempty"`
}

// ServerCPU is the CPU time of the phase's answering process.
func (p *Phase) ServerCPU() time.Duration { return p.CPU[p.Server] }

// CPUPerRequest is the answering process's CPU time per request sent.
func (p *Phase) CPUPerRequest() time.Duration {
	return per(p.ServerCPU(), p.Result.Sent)
}

// CPUPerEvent is the answering process's CPU time per stream event
// received.
func (p *Phase) CPUPerEvent() time.Duration {
	return per(p.ServerCPU(), p.Result.Events)
}

// Completeness is the events received divided by the events the simulated
// Ollama sent, or 0 when the latter is unknown.
func (p *Phase) Completeness() float64 {
	if p.SimEvents == 0 {
		return 0
	}
	return float64(p.Result.Events) / float64(p.SimEvents)
}

func per(d time.Duration, n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return d / time.Duration(n)
}

// Ratio is a/b, or 0 when b is zero.
func Ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Check is one target the report holds a figure against.
type Check struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Unit  string  `json:"unit"`
	// AtMost is true when Value must not exceed Limit, false when it must
	// equal it.
	AtMost bool `json:"at_most"`
	Pass   bool `json:"pass"`
}

// NewCheck evaluates value against limit.
func NewCheck(name string, value, limit float64, unit string, atMost bool) Check {
	pass := value == limit
	if atMost {
		pass = value <= limit
	}
	return Check{Name: name, Value: value, Limit: limit, Unit: unit, AtMost: atMost, Pass: pass}
}

// Targets are the limits the report checks.
type Targets struct {
	// CPURatio bounds sovra's CPU per request relative to the baseline
	// proxy, EventRatio its CPU per streamed event.
	CPURatio   float64 `json:"cpu_ratio"`
	EventRatio float64 `json:"event_ratio"`
	// AddedP99 bounds the p99 latency sovra adds at the rate P99Rate.
	AddedP99 time.Duration `json:"added_p99_ns"`
	P99Rate  float64       `json:"p99_rate"`
}

// Report is the outcome of a benchmark run.
type Report struct {
	Settings map[string]string `json:"settings"`
	Phases   []*Phase          `json:"phases"`
	Checks   []Check           `json:"checks"`
	// Direct, Baseline and Sovra name the servers of the phases: the
	// simulated Ollama and the two proxies.
	Direct   string `json:"direct"`
	Baseline string `json:"baseline"`
	Sovra    string `json:"sovra"`
}

// LoadLabel names the phase's load: "200/s" or "16 clients".
func (p *Phase) LoadLabel() string {
	return Load{Rate: p.Rate, Clients: p.Clients}.Label()
}

// sameLoad says whether p and q ran the same kind of load.
func (p *Phase) sameLoad(q *Phase) bool {
	return q.Stream == p.Stream && q.Rate == p.Rate && q.Clients == p.Clients
}

// Find returns the phase of target at rate (streamed or not, open loop),
// or nil.
func (r *Report) Find(stream bool, rate float64, target string) *Phase {
	for _, p := range r.Phases {
		if p.Stream == stream && p.Rate == rate && p.Clients == 0 && p.Result.Target == target {
			return p
		}
	}
	return nil
}

// direct returns the phase that went straight to the simulator with the
// same stream mode and rate as p.
func (r *Report) direct(p *Phase) *Phase {
	for _, q := range r.Phases {
		if p.sameLoad(q) && q.Server == r.Direct {
			return q
		}
	}
	return nil
}

// baseline returns the baseline proxy's phase matching p.
func (r *Report) baseline(p *Phase) *Phase {
	for _, q := range r.Phases {
		if p.sameLoad(q) && q.Server == r.Baseline {
			return q
		}
	}
	return nil
}

// AddedLatency is p's latency percentile pct minus the direct phase's.
func (r *Report) AddedLatency(p *Phase, pct float64, ttft bool) (time.Duration, bool) {
	d := r.direct(p)
	if d == nil || d == p {
		return 0, false
	}
	pick := func(x *Phase) []time.Duration {
		if ttft {
			return x.Result.TTFT
		}
		return x.Result.Latency
	}
	a, b := sortedCopy(pick(p)), sortedCopy(pick(d))
	if len(a) == 0 || len(b) == 0 {
		return 0, false
	}
	return Percentile(a, pct) - Percentile(b, pct), true
}

// Evaluate fills in the Figures of every phase and r.Checks.
func (r *Report) Evaluate(t Targets) {
	for _, p := range r.Phases {
		f := &Figures{Latency: Summarize(p.Result.Latency), CPUPerRequest: p.CPUPerRequest()}
		if p.Stream {
			ttft := Summarize(p.Result.TTFT)
			f.TTFT, f.CPUPerEvent, f.Completeness = &ttft, p.CPUPerEvent(), p.Completeness()
		}
		if a50, ok := r.AddedLatency(p, 50, p.Stream); ok {
			a99, _ := r.AddedLatency(p, 99, p.Stream)
			f.AddedP50, f.AddedP99 = &a50, &a99
		}
		if b := r.baseline(p); b != nil && p.Server == r.Sovra {
			f.CPUVsBaseline = Ratio(p.CPUPerRequest(), b.CPUPerRequest())
			if p.Stream {
				f.CPUVsBaseline = Ratio(p.CPUPerEvent(), b.CPUPerEvent())
			}
		}
		p.Figures = f
	}
	r.Checks = nil
	for _, p := range r.Phases {
		if p.Server != r.Sovra {
			continue
		}
		b := r.baseline(p)
		if b != nil {
			if p.Stream {
				r.Checks = append(r.Checks, NewCheck(
					fmt.Sprintf("CPU per event at %s, %s vs baseline", p.LoadLabel(), p.Result.Target),
					Ratio(p.CPUPerEvent(), b.CPUPerEvent()), t.EventRatio, "x", true))
			} else {
				r.Checks = append(r.Checks, NewCheck(
					fmt.Sprintf("CPU per request at %s, %s vs baseline", p.LoadLabel(), p.Result.Target),
					Ratio(p.CPUPerRequest(), b.CPUPerRequest()), t.CPURatio, "x", true))
			}
		}
		if !p.Stream && p.Clients == 0 && p.Rate == t.P99Rate {
			if add, ok := r.AddedLatency(p, 99, false); ok {
				r.Checks = append(r.Checks, NewCheck(
					fmt.Sprintf("added p99 at %g/s, %s", p.Rate, p.Result.Target),
					ms(add), ms(t.AddedP99), "ms", true))
			}
		}
	}
	for _, p := range r.Phases {
		if p.Stream && p.Server != r.Direct {
			r.Checks = append(r.Checks, NewCheck(
				"stream completeness, "+p.Result.Target, p.Completeness(), 1, "", false))
		}
	}
	for _, p := range r.Phases {
		if p.Result.Errors > 0 {
			r.Checks = append(r.Checks, NewCheck(
				fmt.Sprintf("failed requests, %s at %s", p.Result.Target, p.LoadLabel()),
				float64(p.Result.Errors), 0, "", true))
		}
	}
}

// Passed reports whether every check passed.
func (r *Report) Passed() bool {
	for _, c := range r.Checks {
		if !c.Pass {
			return false
		}
	}
	return true
}

// WriteTable prints the report as aligned tables.
func (r *Report) WriteTable(out io.Writer) {
	var unary, stream []*Phase
	for _, p := range r.Phases {
		if p.Stream {
			stream = append(stream, p)
		} else {
			unary = append(unary, p)
		}
	}
	if len(unary) > 0 {
		fmt.Fprintln(out, "Non-streamed chat; load: requests started per second (open loop) or clients each sending its next request when")
		fmt.Fprintln(out, "the last ended (closed loop). Latency: send to last byte; +p50/+p99: minus direct's; CPU/req: CPU time of the")
		fmt.Fprintln(out, "answering process (the simulator for direct) per request; vs base: sovra's CPU/req over the baseline's; lag: how late the")
		fmt.Fprintln(out, "load generator started its latest request (large values mean the client itself was short of CPU).")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "load\ttarget\tsent\tok\terr\tp50\tp99\tmax\t+p50\t+p99\tCPU/req\tvs base\tlag\t")
		for _, p := range unary {
			s := Summarize(p.Result.Latency)
			a50, _ := r.AddedLatency(p, 50, false)
			a99, ok := r.AddedLatency(p, 99, false)
			add50, add99 := "-", "-"
			if ok {
				add50, add99 = signedMs(a50), signedMs(a99)
			}
			vs := "-"
			if b := r.baseline(p); b != nil && b != p && p.Server != r.Direct {
				vs = fmt.Sprintf("%.2fx", Ratio(p.CPUPerRequest(), b.CPUPerRequest()))
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
				p.LoadLabel(), p.Result.Target, p.Result.Sent, p.Result.OK, p.Result.Errors,
				fmtMs(s.P50), fmtMs(s.P99), fmtMs(s.Max), add50, add99,
				fmtUs(p.CPUPerRequest()), vs, fmtMs(p.Result.MaxLag))
		}
		_ = tw.Flush()
		fmt.Fprintln(out)
	}
	if len(stream) > 0 {
		fmt.Fprintln(out, "Streamed chat. TTFT: send to the first event with text; events: SSE data events or NDJSON lines before the end")
		fmt.Fprintln(out, "marker; complete: events received / messages the simulator sent; end: time to the last byte; CPU/event: CPU time of the")
		fmt.Fprintln(out, "answering process per event; vs base: sovra's CPU/event over the baseline's CPU per NDJSON line.")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "load\ttarget\tstreams\tok\tevents\tcomplete\tTTFT p50\tTTFT p99\t+TTFT p50\t+TTFT p99\tend p50\tend p99\tCPU/event\tvs base\t")
		for _, p := range stream {
			ttft := Summarize(p.Result.TTFT)
			end := Summarize(p.Result.Latency)
			a50, _ := r.AddedLatency(p, 50, true)
			a99, ok := r.AddedLatency(p, 99, true)
			add50, add99 := "-", "-"
			if ok {
				add50, add99 = signedMs(a50), signedMs(a99)
			}
			vs := "-"
			if b := r.baseline(p); b != nil && b != p && p.Server != r.Direct {
				vs = fmt.Sprintf("%.2fx", Ratio(p.CPUPerEvent(), b.CPUPerEvent()))
			}
			comp := "?"
			if p.SimEvents > 0 {
				comp = fmt.Sprintf("%.4f", p.Completeness())
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
				p.LoadLabel(), p.Result.Target, p.Result.Streams, p.Result.OK, p.Result.Events, comp,
				fmtMs(ttft.P50), fmtMs(ttft.P99), add50, add99, fmtMs(end.P50), fmtMs(end.P99),
				fmtUs(p.CPUPerEvent()), vs)
		}
		_ = tw.Flush()
		fmt.Fprintln(out)
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(out, "Targets")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, c := range r.Checks {
			verdict := "PASS"
			if !c.Pass {
				verdict = "FAIL"
			}
			op := "="
			if c.AtMost {
				op = "<="
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s %s\t%s\n", c.Name, num(c.Value, c.Unit), op, num(c.Limit, c.Unit), verdict)
		}
		_ = tw.Flush()
	}
	if len(r.Settings) > 0 {
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(r.Settings)) {
			fmt.Fprintf(&b, " %s=%s", k, r.Settings[k])
		}
		fmt.Fprintf(out, "\nSettings:%s\n", b.String())
	}
}

func num(v float64, unit string) string {
	switch unit {
	case "x":
		return fmt.Sprintf("%.2fx", v)
	case "ms":
		return fmt.Sprintf("%.3f ms", v)
	case "":
		return fmt.Sprintf("%.4g", v)
	default:
		return fmt.Sprintf("%.4g %s", v, unit)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.3fms", ms(d)) }

func signedMs(d time.Duration) string { return fmt.Sprintf("%+.3fms", ms(d)) }

func fmtUs(d time.Duration) string {
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}
