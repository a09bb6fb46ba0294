package energy

import (
	"time"

	"github.com/sovra/sovra/node/agent"
)

// Source says how a GPU's energy over an interval was found. It is the
// source label of the metrics.
type Source string

// Sources, best first.
const (
	// SourceCounter is the difference of the board's energy counter.
	SourceCounter Source = "counter"
	// SourcePower is the power draw integrated over the interval.
	SourcePower Source = "power"
	// SourceEstimate is rated power times utilisation: not measured.
	SourceEstimate Source = "estimate"
)

// Sources lists the sources, best first.
var Sources = []Source{SourceCounter, SourcePower, SourceEstimate}

// GPUEnergy is the energy one GPU used over one interval.
type GPUEnergy struct {
	Index  int
	Joules float64
	Source Source
}

// Meter turns successive readings of a node's GPUs into the energy each
// used between them. The zero value is ready; it is not safe for
// concurrent use.
type Meter struct {
	// MaxGap is the longest interval that power or an estimate is
	// integrated over: past it the readings at its ends say too little of
	// what happened between them, and the interval is not measured (a
	// counter is trusted over any gap). Zero means no limit.
	MaxGap time.Duration

	prev map[int]sample
}

// sample is a GPU's reading and when it was taken.
type sample struct {
	at time.Time
	r  agent.PowerReading
}

// Step takes the readings made at `at` and returns the energy each GPU
// used since its previous reading, sorted as the readings are. names
// gives GPU names by index, for RatedWatts. A GPU seen for the first time,
// or whose UUID changed, gives nothing this step (its reading is the base
// of the next); so does one whose figures allow no measurement. A GPU
// missing from the readings keeps its previous reading: a counter then
// covers the missed interval at the next step.
func (m *Meter) Step(at time.Time, readings []agent.PowerReading, names map[int]string) []GPUEnergy {
	if m.prev == nil {
		m.prev = map[int]sample{}
	}
	var out []GPUEnergy
	for _, r := range readings {
		p, ok := m.prev[r.Index]
		m.prev[r.Index] = sample{at: at, r: r}
		if !ok || p.r.UUID != r.UUID {
			continue
		}
		if e, ok := m.energy(p, sample{at: at, r: r}, names[r.Index]); ok {
			out = append(out, e)
		}
	}
	return out
}

// energy is one GPU's energy between two samples, by the best source
// both give.
func (m *Meter) energy(p, c sample, name string) (GPUEnergy, bool) {
	e := GPUEnergy{Index: c.r.Index}
	dt := c.at.Sub(p.at)
	if dt <= 0 {
		return e, false
	}
	if p.r.HasEnergy && c.r.HasEnergy && c.r.EnergyMJ >= p.r.EnergyMJ {
		e.Joules, e.Source = (c.r.EnergyMJ-p.r.EnergyMJ)/1000, SourceCounter
		return e, true
	}
	if m.MaxGap > 0 && dt > m.MaxGap {
		return e, false
	}
	secs := dt.Seconds()
	if c.r.HasWatts {
		e.Joules, e.Source = mean(p.r.Watts, p.r.HasWatts, c.r.Watts)*secs, SourcePower
		return e, true
	}
	rated := c.r.LimitWatts
	if !c.r.HasLimit || rated <= 0 {
		rated, _ = RatedWatts(name)
	}
	if c.r.HasUtil && rated > 0 {
		util := mean(p.r.Util, p.r.HasUtil, c.r.Util)
		e.Joules, e.Source = rated*util/100*secs, SourceEstimate
		return e, true
	}
	return e, false
}

// mean is the mean of a previous and a current figure, or the current
// one when the previous is unknown.
func mean(prev float64, known bool, cur float64) float64 {
	if !known {
		return cur
	}
	return (prev + cur) / 2
}
