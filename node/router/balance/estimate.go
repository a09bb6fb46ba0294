package balance

import (
	"cmp"
	"slices"
	"time"

	"github.com/sovra/sovra/node/router/load"
)

// Fallbacks when no candidate has measured anything yet: every replica
// then looks alike and the estimate ranks them by queue per slot.
const (
	fallbackTTFTMs = 100
	fallbackOut    = 1
)

// unknownPenalty scales the estimate of a replica whose load report is
// stale: its queue may be longer than it looks.
const unknownPenalty = 1.5

// minPrefillShare bounds how far a prompt the cache holds can shorten the
// time to first token below the replica's average: what remains is the
// part every request pays (scheduling, the first token).
const minPrefillShare = 0.1

// estimator estimates when a request would finish on a replica. A
// replica that has not measured something yet borrows the candidates'
// average, so a new replica is neither shunned nor flooded.
type estimator struct {
	ttftMs, tps, out, perKiB, promptKiB float64
	maxTokens                           int
	// svc are the candidates' service times, replicas of alike speed
	// sharing their mean (see alike).
	svc []float64
}

// speedNoise is how far apart, as a share of the faster, two replicas'
// learned service times may be and still be taken for the same speed:
// the moving averages of equal replicas differ by a few percent from
// one sample to the next, and a difference that small is not worth a
// request waiting behind another where a slot is free.
const speedNoise = 0.1

// hopCostMs is what a forward to another node adds, in milliseconds.
const hopCostMs = 0.5

func newEstimator(cands []Candidate, maxTokens int) estimator {
	e := estimator{maxTokens: maxTokens}
	var sum [5]float64
	var n [5]int
	for _, c := range cands {
		m := c.Load.Model
		for i, v := range [5]float64{m.TTFTMs, m.TokensPerSec, m.OutTokens, m.PrefillMsPerKiB, m.PromptKiB} {
			if v > 0 {
				sum[i] += v
				n[i]++
			}
		}
	}
	e.ttftMs = mean(sum[0], n[0], fallbackTTFTMs)
	e.tps = mean(sum[1], n[1], 0)
	e.out = mean(sum[2], n[2], fallbackOut)
	e.perKiB = mean(sum[3], n[3], 0)
	e.promptKiB = mean(sum[4], n[4], 0)
	e.svc = make([]float64, len(cands))
	for i, c := range cands {
		e.svc[i] = e.service(c.Load.Model)
	}
	alike(e.svc, speedNoise)
	return e
}

// alike gives replicas whose service times are within noise of each
// other one service time, their mean: sorted, each group starts at the
// fastest replica not yet in one and takes every slower one within noise
// of it. Equal replicas are then ranked by their wait alone (free slots,
// then queue), as least-connections would rank them, and not by the
// noise of their averages.
func alike(svc []float64, noise float64) {
	order := make([]int, len(svc))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(svc[a], svc[b]) })
	for start := 0; start < len(order); {
		end, sum := start, 0.0
		for end < len(order) && svc[order[end]] <= svc[order[start]]*(1+noise) {
			sum += svc[order[end]]
			end++
		}
		for _, i := range order[start:end] {
			svc[i] = sum / float64(end-start)
		}
		start = end
	}
}

func mean(sum float64, n int, fallback float64) float64 {
	if n == 0 {
		return fallback
	}
	return sum / float64(n)
}

// service is the time, in milliseconds, an average request takes on the
// replica once it has a slot.
func (e estimator) service(m load.Model) float64 {
	return or(m.TTFTMs, e.ttftMs) + e.decode(m)
}

// decode is the time, in milliseconds, the replica takes to generate the
// answer after its first token.
func (e estimator) decode(m load.Model) float64 {
	tps, out := or(m.TokensPerSec, e.tps), or(m.OutTokens, e.out)
	if e.maxTokens > 0 && float64(e.maxTokens) < out {
		out = float64(e.maxTokens)
	}
	if tps <= 0 {
		return 0
	}
	return out / tps * 1000
}

// prefill is how much longer, in milliseconds, this request's prompt
// takes to evaluate on the replica than the replica's average request
// does, when uncachedKiB of it are not in the replica's cache (negative
// when it takes less). It is 0 until the replica, or another candidate,
// has measured what a KiB costs.
func (e estimator) prefill(m load.Model, uncachedKiB float64) float64 {
	perKiB := or(m.PrefillMsPerKiB, e.perKiB)
	if perKiB <= 0 {
		return 0
	}
	ttft := or(m.TTFTMs, e.ttftMs)
	d := perKiB * (uncachedKiB - or(m.PromptKiB, e.promptKiB))
	return max(d, -(1-minPrefillShare)*ttft)
}

// finish is the estimated time, in milliseconds, until the request would
// be answered on candidate c (the i-th), whose cache lacks uncachedKiB of its
// prompt: the wait for a slot, then its service.
func (e estimator) finish(i int, c Candidate, uncachedKiB float64) float64 {
	l := c.Load
	svc := e.svc[i]
	slots := float64(max(1, l.Slots))
	busy := e.busy(c, svc)
	// Among replicas with a free slot, prefer the emptier: a tiny term
	// that breaks what would otherwise be a tie.
	est := svc*(1+1e-3*busy/slots) + e.prefill(l.Model, uncachedKiB) + wait(busy, slots, svc, firstFree(c, svc, slots))
	if l.Health != load.Fresh {
		est *= unknownPenalty
	}
	if c.Hop {
		est += hopCostMs
	}
	return est
}

// wait is how long a request waits for one of slots slots behind busy
// requests of service svc when the first slot frees after first: nothing
// while a slot is free; with every slot taken, first, and each request
// queued ahead holds one slot's share of a service time. An expected,
// fractional busy between slots-1 and slots ramps the wait up from
// nothing.
func wait(busy, slots, svc, first float64) float64 {
	switch {
	case busy <= slots-1:
		return 0
	case busy < slots:
		return (busy - (slots - 1)) * first
	}
	return (busy-slots)*svc/slots + first
}

// minResidual is the least share of a service time a running request is
// expected to have left: one past its average may end at any moment.
const minResidual = 0.05

// firstFree is when, in milliseconds, the first of the candidate's slots
// frees: the rest of its oldest running request's service when this node
// knows how long it has run, else about svc/(slots+1), the soonest of
// slots running requests to end.
func firstFree(c Candidate, svc, slots float64) float64 {
	if c.RunningFor <= 0 {
		return svc / (slots + 1)
	}
	return max(svc-float64(c.RunningFor)/float64(time.Millisecond), minResidual*svc)
}

// busy is how many requests candidate c is expected to hold now. A
// peer's report is Age old: since, the others' requests it counted (all
// but this node's) have been finishing at the replica's pace, and other
// nodes have been sending more at OthersRate. This node's own requests
// it knows exactly.
func (e estimator) busy(c Candidate, svc float64) float64 {
	l := c.Load
	b := float64(l.Busy())
	if l.Age <= 0 || svc <= 0 {
		return b
	}
	age := min(l.Age, load.DefaultStaleAfter).Seconds() * 1000
	others := float64(max(0, l.Running+l.Queued-max(0, l.Outstanding-l.Pending)))
	done := min(others, age*float64(max(1, l.Slots))/svc)
	return max(float64(l.Outstanding), b-done+c.OthersRate*age/1000)
}

func or(v, fallback float64) float64 {
	if v > 0 {
		return v
	}
	return fallback
}
