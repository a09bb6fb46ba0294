package balance

import "github.com/sovra/sovra/node/router/load"

// Fallbacks when no candidate has measured anything yet: every replica
// then looks alike and the estimate ranks them by queue per slot.
const (
	fallbackTTFTMs = 100
	fallbackOut    = 1
)

// unknownPenalty scales the estimate of a replica whose load report is
// stale: its queue may be longer than it looks.
const unknownPenalty = 1.5

// estimator estimates when a request would finish on a replica. A
// replica that has not measured something yet borrows the candidates'
// average, so a new replica is neither shunned nor flooded.
type estimator struct {
	ttftMs, tps, out float64
	maxTokens        int
}

// hopCostMs is what a forward to another node adds, in milliseconds.
const hopCostMs = 0.5

func newEstimator(cands []Candidate, maxTokens int) estimator {
	e := estimator{maxTokens: maxTokens}
	var nT, nS, nO int
	for _, c := range cands {
		m := c.Load.Model
		if m.TTFTMs > 0 {
			e.ttftMs += m.TTFTMs
			nT++
		}
		if m.TokensPerSec > 0 {
			e.tps += m.TokensPerSec
			nS++
		}
		if m.OutTokens > 0 {
			e.out += m.OutTokens
			nO++
		}
	}
	e.ttftMs = mean(e.ttftMs, nT, fallbackTTFTMs)
	e.tps = mean(e.tps, nS, 0)
	e.out = mean(e.out, nO, fallbackOut)
	return e
}

func mean(sum float64, n int, fallback float64) float64 {
	if n == 0 {
		return fallback
	}
	return sum / float64(n)
}

// service is the time, in milliseconds, one request takes on the replica
// once it has a slot.
func (e estimator) service(m load.Model) float64 {
	maxTokens := e.maxTokens
	ttft, tps, out := or(m.TTFTMs, e.ttftMs), or(m.TokensPerSec, e.tps), or(m.OutTokens, e.out)
	if maxTokens > 0 && float64(maxTokens) < out {
		out = float64(maxTokens)
	}
	if tps <= 0 {
		return ttft
	}
	return ttft + out/tps*1000
}

// finish is the estimated time, in milliseconds, until the request would
// be answered on a replica with load l: the wait for a slot, then its
// service. With every slot taken, the first frees after about
// service/(slots+1) (the soonest of slots running requests) and each
// request queued ahead holds one slot's share of a service time.
func (e estimator) finish(c Candidate) float64 {
	l := c.Load
	svc := e.service(l.Model)
	slots := max(1, l.Slots)
	busy := l.Busy()
	// Among replicas with a free slot, prefer the emptier: a tiny term
	// that breaks what would otherwise be a tie.
	est := svc * (1 + 1e-3*float64(busy)/float64(slots))
	if busy >= slots {
		est += float64(busy-slots)*svc/float64(slots) + svc/float64(slots+1)
	}
	if l.Health != load.Fresh {
		est *= unknownPenalty
	}
	if c.Hop {
		est += hopCostMs
	}
	return est
}

// capacity is a replica's relative throughput: slots times decode speed.
func (e estimator) capacity(m load.Model) float64 {
	c := float64(max(1, m.Slots))
	if tps := or(m.TokensPerSec, e.tps); tps > 0 {
		c *= tps
	}
	return c
}

func or(v, fallback float64) float64 {
	if v > 0 {
		return v
	}
	return fallback
}
