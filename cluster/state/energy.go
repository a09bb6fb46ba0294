package state

import (
	"fmt"
	"sort"
)

// Energy accounting: each node measures its GPUs' energy and attributes
// it to the models it served by their output tokens (node/energy), and
// writes its sums per model and hour in one record-energy every flush
// interval, beside its usage. Batches are numbered and deduplicated as
// usage batches are. rollup-usage rolls energy hour buckets up into days
// and drops old days with the same cut-offs.

// TypeRecordEnergy is written with FlagIgnorable and no idempotency key:
// a node that does not know it only misses energy, and stays identical
// in everything else.
const TypeRecordEnergy Type = 23

// EnergyTotal is the energy one node's GPUs spent on one model's output
// in one hour (Hours 1) or, once rolled up, on all nodes in one UTC day
// (Hours 24, Node empty). Model is the Ollama tag in its normal form
// (models.NormalizeName). State.Energy files it under EnergyKey.
type EnergyTotal struct {
	Start int64  `json:"start"` // Unix seconds
	Hours int64  `json:"hours"`
	Model string `json:"model"`
	Node  string `json:"node,omitempty"`
	// MilliJoules is the energy attributed to the model's output tokens;
	// EstimatedMilliJoules is the part of it estimated from rated power
	// and utilisation instead of measured.
	MilliJoules          int64 `json:"mj"`
	EstimatedMilliJoules int64 `json:"estimated_mj,omitempty"`
	// OutputTokens are the output tokens the energy was attributed to.
	OutputTokens int64 `json:"output_tokens"`
}

// RecordEnergy adds one node's batch of energy hour buckets. Batch
// numbers a node's batches in the order it sends them: a retry sends the
// same number.
type RecordEnergy struct {
	Node    string        `json:"node"`
	Batch   uint64        `json:"batch"`
	Buckets []EnergyTotal `json:"buckets"`
}

// EnergyKey is the map key of an energy bucket.
func EnergyKey(e *EnergyTotal) string {
	return fmt.Sprintf("%d/%d\x00%s\x00%s", e.Start, e.Hours, e.Model, e.Node)
}

func (s *State) recordEnergy(_ uint64, c *RecordEnergy) Outcome {
	if c.Node == "" || c.Batch == 0 {
		return fail("invalid", "an energy batch needs its node and batch number")
	}
	if last, ok := s.EnergyBatches[c.Node]; ok && c.Batch <= last {
		return value(usageResult{Duplicate: true})
	}
	for i, b := range c.Buckets {
		switch {
		case b.Hours != 1 || b.Start%3600 != 0 || b.Model == "":
			return fail("invalid", "energy bucket %d is not an hour bucket of a model", i)
		case b.MilliJoules < 0 || b.EstimatedMilliJoules < 0 || b.EstimatedMilliJoules > b.MilliJoules || b.OutputTokens < 0:
			return fail("invalid", "energy bucket %d has a negative figure or more estimated than in all", i)
		}
	}
	if s.Energy == nil {
		s.Energy = map[string]*EnergyTotal{}
	}
	for i := range c.Buckets {
		s.addEnergy(c.Buckets[i])
	}
	if s.EnergyBatches == nil {
		s.EnergyBatches = map[string]uint64{}
	}
	s.EnergyBatches[c.Node] = c.Batch
	return value(usageResult{})
}

// addEnergy adds b to its bucket.
func (s *State) addEnergy(b EnergyTotal) {
	k := EnergyKey(&b)
	cur := s.Energy[k]
	if cur == nil {
		cp := b
		s.Energy[k] = &cp
		return
	}
	cur.MilliJoules += b.MilliJoules
	cur.EstimatedMilliJoules += b.EstimatedMilliJoules
	cur.OutputTokens += b.OutputTokens
}

// rollupEnergy does for the energy buckets what rollupUsage does for the
// usage buckets.
func (s *State) rollupEnergy(c *RollupUsage) {
	keys := make([]string, 0, len(s.Energy))
	for k := range s.Energy {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b := s.Energy[k]
		switch {
		case b.Hours == 24 && c.DropBefore > 0 && b.Start < c.DropBefore:
			delete(s.Energy, k)
		case b.Hours == 1 && b.Start < c.Before:
			delete(s.Energy, k)
			day := *b
			day.Start, day.Hours, day.Node = b.Start-b.Start%86400, 24, ""
			s.addEnergy(day)
		}
	}
}

// EnergyList is the energy buckets that overlap [since, until) (Unix s;
// until 0: no end), sorted by start, model and node.
func (s *State) EnergyList(since, until int64) []EnergyTotal {
	var out []EnergyTotal
	for _, b := range s.Energy {
		end := b.Start + b.Hours*3600
		if end <= since || (until > 0 && b.Start >= until) {
			continue
		}
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return EnergyKey(&out[i]) < EnergyKey(&out[j]) })
	return out
}
