package energy

import (
	"context"
	"math"
	"sort"

	"github.com/sovra/sovra/cluster/state"
)

// Apply commits a command through the leader.
type Apply func(ctx context.Context, cmd state.Command) (state.Outcome, error)

// recorder is the batch being written to the state and the number of the
// last one, as in node/usage: a batch keeps its number until it is
// written, so a retry is recognised by the state and not counted twice.
type recorder struct {
	pending   *state.RecordEnergy
	lastBatch uint64
}

// batch is the batch to write: the one not yet written, else a new one
// of the hour buckets booked since (nil when there are none). The caller
// holds s.mu.
func (s *Sampler) batch() *state.RecordEnergy {
	if s.rec.pending != nil || len(s.led.hours) == 0 {
		return s.rec.pending
	}
	b := &state.RecordEnergy{Node: s.cfg.Node, Batch: max(uint64(s.cfg.Now().UnixNano()), s.rec.lastBatch+1)}
	for k, h := range s.led.hours {
		mj, est := milli(h.joules), milli(h.estimated)
		b.Buckets = append(b.Buckets, state.EnergyTotal{Start: k.start, Hours: 1, Model: k.model, Node: s.cfg.Node,
			MilliJoules: mj, EstimatedMilliJoules: min(est, mj), OutputTokens: h.tokens})
	}
	sort.Slice(b.Buckets, func(i, j int) bool {
		return state.EnergyKey(&b.Buckets[i]) < state.EnergyKey(&b.Buckets[j])
	})
	s.led.hours = map[hourModel]*hourSums{}
	s.rec.pending, s.rec.lastBatch = b, b.Batch
	return b
}

// milli rounds joules to millijoules.
func milli(j float64) int64 { return int64(math.Round(j * 1000)) }

// Flush writes one batch of energy buckets, the same one again after a
// failure. A node outside a cluster never calls it.
func (s *Sampler) Flush(ctx context.Context, apply Apply) error {
	s.mu.Lock()
	b := s.batch()
	s.mu.Unlock()
	if b == nil {
		return nil
	}
	out, err := apply(ctx, state.Command{Type: state.TypeRecordEnergy, Flags: state.FlagIgnorable, Body: *b})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.rec.pending = nil
	s.mu.Unlock()
	return out.Err() // a refused batch is not sent again
}
