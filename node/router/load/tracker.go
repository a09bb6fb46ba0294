package load

import (
	"sync"
	"time"
)

// DefaultAlpha is the weight of a new sample in Tracker's moving averages.
const DefaultAlpha = 0.2

// minDecodeTime is the shortest decode time that yields a speed sample;
// anything shorter is a measurement artefact, not a speed.
const minDecodeTime = time.Millisecond

// Sample is what one finished request measured on this node.
type Sample struct {
	// TTFT is the time from the request's start on Ollama to its first
	// token (<= 0: not measured).
	TTFT time.Duration
	// OutTokens are the completion tokens (<= 0: not measured).
	OutTokens int
	// DecodeTime is the time spent generating OutTokens (< 1ms: no speed
	// sample).
	DecodeTime time.Duration
	// PromptBytes is the part of the prompt, in bytes, that the replica's
	// cache did not hold (an estimate; <= 0: not measured), and
	// PromptTime the time Ollama spent evaluating the prompt. Below
	// minPromptBytes, or without a time, there is no prefill sample.
	PromptBytes int
	PromptTime  time.Duration
}

// minPromptBytes is the least uncached prompt that yields a prefill
// sample: a prompt that the cache held almost whole says nothing of the
// cost per byte.
const minPromptBytes = 256

// Tracker keeps exponential moving averages of this node's own
// measurements per model: time to first token, decode speed, answer
// length, and what a KiB of prompt the cache does not hold costs. It is
// safe for concurrent use; Observe and Get take one short lock.
type Tracker struct {
	alpha float64

	mu     sync.Mutex
	models map[string]*averages
}

// averages are one model's moving averages; a zero field means nothing
// measured yet (every valid sample is > 0).
type averages struct {
	ttftMs, tokensPerSec, outTokens float64
	// promptKiB averages the uncached prompt of the requests behind
	// ttftMs; prefill those of the prefill samples.
	promptKiB float64
	prefill   moments
}

// moments are moving averages of the uncached prompt x (KiB), the prompt
// evaluation time y (ms) and their products, from which the cost of one
// more KiB is the slope of y over x: the regression separates it from a
// fixed cost that every prompt pays.
type moments struct {
	n            int
	x, y, xx, xy float64
}

// NewTracker returns a Tracker whose averages give a new sample the weight
// alpha; alpha <= 0 (or NaN) means DefaultAlpha and alpha > 1 means 1.
func NewTracker(alpha float64) *Tracker {
	switch {
	case !(alpha > 0):
		alpha = DefaultAlpha
	case alpha > 1:
		alpha = 1
	}
	return &Tracker{alpha: alpha, models: make(map[string]*averages)}
}

// Observe folds one request's sample into model's averages. model is a
// normalized Ollama tag. Fields that were not measured leave their average
// alone.
func (t *Tracker) Observe(model string, s Sample) {
	ttft, haveTTFT := float64(s.TTFT)/float64(time.Millisecond), s.TTFT > 0
	out, haveOut := float64(s.OutTokens), s.OutTokens > 0
	tps, haveTPS := 0.0, haveOut && s.DecodeTime >= minDecodeTime
	if haveTPS {
		tps = out / s.DecodeTime.Seconds()
	}
	haveFill := s.PromptBytes >= minPromptBytes && s.PromptTime > 0
	if !haveTTFT && !haveOut && !haveFill {
		return
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.models[model]
	if a == nil {
		a = &averages{}
		t.models[model] = a
	}
	if haveTTFT {
		a.ttftMs = t.fold(a.ttftMs, ttft)
		if s.PromptBytes > 0 {
			a.promptKiB = t.fold(a.promptKiB, float64(s.PromptBytes)/1024)
		}
	}
	if haveOut {
		a.outTokens = t.fold(a.outTokens, out)
	}
	if haveTPS {
		a.tokensPerSec = t.fold(a.tokensPerSec, tps)
	}
	if haveFill {
		a.prefill.add(t.alpha, float64(s.PromptBytes)/1024, float64(s.PromptTime)/float64(time.Millisecond))
	}
}

// add folds the sample (x, y) in with weight alpha; the first sample sets
// the moments.
func (m *moments) add(alpha, x, y float64) {
	if m.n == 0 {
		alpha = 1
	}
	m.n++
	m.x += alpha * (x - m.x)
	m.y += alpha * (y - m.y)
	m.xx += alpha * (x*x - m.xx)
	m.xy += alpha * (x*y - m.xy)
}

// perKiB is the cost of one more KiB: the regression slope when the
// prompts vary enough for it (a spread of a tenth of their mean), bounded
// by the mean time per KiB, which it falls back to otherwise.
func (m moments) perKiB() float64 {
	if m.n == 0 || m.x <= 0 {
		return 0
	}
	mean := m.y / m.x
	v := m.xx - m.x*m.x
	if m.n < 3 || v < 0.01*m.x*m.x {
		return mean
	}
	return max(0, min(mean, (m.xy-m.x*m.y)/v))
}

// fold returns the average avg moved toward sample; the first sample
// (avg == 0) becomes the average.
func (t *Tracker) fold(avg, sample float64) float64 {
	if avg == 0 {
		return sample
	}
	return avg + t.alpha*(sample-avg)
}

// Get returns model's averages; Running, Queued and Slots are zero (the
// caller knows them), and so is every average not measured yet.
func (t *Tracker) Get(model string) Model {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.models[model].model()
}

// Snapshot returns the averages of every model observed so far, keyed by
// tag, for building a Report.
func (t *Tracker) Snapshot() map[string]Model {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]Model, len(t.models))
	for tag, a := range t.models {
		out[tag] = a.model()
	}
	return out
}

func (a *averages) model() Model {
	if a == nil {
		return Model{}
	}
	return Model{TTFTMs: a.ttftMs, TokensPerSec: a.tokensPerSec, OutTokens: a.outTokens,
		PrefillMsPerKiB: a.prefill.perKiB(), PromptKiB: a.promptKiB}
}
