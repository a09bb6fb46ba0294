package energy

import (
	"strconv"
	"time"
)

// modelSource and gpuSource key the running totals.
type (
	modelSource struct {
		model  string
		source Source
	}
	gpuSource struct {
		gpu    int
		source Source
	}
)

// windowEntry is one model's share of one interval, kept for the sliding
// window of the gauges.
type windowEntry struct {
	at        time.Time
	model     string
	joules    float64
	estimated float64
	tokens    int64
}

// hourModel keys the hour buckets not yet written to the state.
type hourModel struct {
	start int64
	model string
}

// hourSums are one hour bucket's sums.
type hourSums struct {
	joules, estimated float64
	tokens            int64
}

// ledger holds what the sampler measured: running totals for the
// counters, the entries of the sliding window, and the hour buckets not
// yet handed to a batch. Its owner locks it.
type ledger struct {
	joules   map[modelSource]float64
	measured map[string]int64 // output tokens that energy was attributed to
	output   map[string]int64 // every output token counted
	idle     map[gpuSource]float64
	gpu      map[gpuSource]float64
	window   []windowEntry
	hours    map[hourModel]*hourSums
}

func newLedger() ledger {
	return ledger{joules: map[modelSource]float64{}, measured: map[string]int64{}, output: map[string]int64{},
		idle: map[gpuSource]float64{}, gpu: map[gpuSource]float64{}, hours: map[hourModel]*hourSums{}}
}

// add books one interval measured at `at`, and drops window entries
// older than window.
func (l *ledger) add(at time.Time, gpus []GPUEnergy, iv Interval, window time.Duration) {
	for _, g := range gpus {
		l.gpu[gpuSource{g.Index, g.Source}] += g.Joules
	}
	for _, g := range iv.Idle {
		l.idle[gpuSource{g.Index, g.Source}] += g.Joules
	}
	hour := at.Unix() / 3600 * 3600
	for m, sh := range iv.Models {
		e := windowEntry{at: at, model: m, joules: sh.Total(), estimated: sh.Joules[SourceEstimate], tokens: sh.Tokens}
		for src, j := range sh.Joules {
			l.joules[modelSource{m, src}] += j
		}
		l.measured[m] += sh.Tokens
		l.window = append(l.window, e)
		h := l.hours[hourModel{hour, m}]
		if h == nil {
			h = &hourSums{}
			l.hours[hourModel{hour, m}] = h
		}
		h.joules, h.estimated, h.tokens = h.joules+e.joules, h.estimated+e.estimated, h.tokens+e.tokens
	}
	l.prune(at.Add(-window))
}

// prune drops the window entries made before cut.
func (l *ledger) prune(cut time.Time) {
	i := 0
	for i < len(l.window) && l.window[i].at.Before(cut) {
		i++
	}
	l.window = append(l.window[:0], l.window[i:]...)
}

// Efficiency is a model's energy per output token over the window.
type Efficiency struct {
	Joules, EstimatedJoules float64
	Tokens                  int64
}

// JoulesPer1k is the joules per 1,000 output tokens (0 without tokens).
func (e Efficiency) JoulesPer1k() float64 {
	if e.Tokens == 0 {
		return 0
	}
	return e.Joules / float64(e.Tokens) * 1000
}

// EstimatedShare is the part of the joules that is estimated, 0 to 1.
func (e Efficiency) EstimatedShare() float64 {
	if e.Joules == 0 {
		return 0
	}
	return e.EstimatedJoules / e.Joules
}

// efficiency sums the window by model.
func (l *ledger) efficiency() map[string]Efficiency {
	out := map[string]Efficiency{}
	for _, e := range l.window {
		s := out[e.model]
		s.Joules, s.EstimatedJoules, s.Tokens = s.Joules+e.joules, s.EstimatedJoules+e.estimated, s.Tokens+e.tokens
		out[e.model] = s
	}
	return out
}

// gpuLabel is a GPU index as a metric label.
func gpuLabel(i int) string { return strconv.Itoa(i) }
