package state

import (
	"fmt"
	"sort"
)

// Usage accounting: each node sums what the requests it received used,
// by key, model, serving node and hour, and writes its sums in one
// record-usage every flush interval (never a write per request). A
// batch carries its node's batch number; a batch numbered at or below
// the last one applied for that node is a retry and changes nothing. The
// leader rolls hour buckets older than the retention up into day buckets
// (all nodes together) and drops day buckets past the day retention.

// Usage commands (types after the audit log's).
const (
	// TypeRecordUsage is written with FlagIgnorable: a node that does not
	// know it only misses usage.
	TypeRecordUsage Type = 21
	TypeRollupUsage Type = 22
)

// Bodies of the usage commands.
type (
	// RecordUsage adds one node's batch of hour buckets. Batch numbers a
	// node's batches in the order it sends them (its clock in ns when it
	// made the batch): a retry sends the same number.
	RecordUsage struct {
		Node    string       `json:"node"`
		Batch   uint64       `json:"batch"`
		Buckets []UsageTotal `json:"buckets"`
	}
	// RollupUsage turns the hour buckets that start before Before (Unix
	// s) into day buckets and drops the day buckets that start before
	// DropBefore (0: none).
	RollupUsage struct {
		Before     int64 `json:"before"`
		DropBefore int64 `json:"drop_before,omitempty"`
	}
)

// usageResult is record-usage's value: Duplicate when the batch had been
// counted.
type usageResult struct {
	Duplicate bool `json:"duplicate,omitempty"`
}

// UsageKey is the map key of a bucket.
func UsageKey(u *UsageTotal) string {
	return fmt.Sprintf("%d/%d\x00%s\x00%s\x00%s", u.Start, u.Hours, u.Key, u.Model, u.Node)
}

// dispatchUsage applies the usage commands; ok is false for other types.
func (s *State) dispatchUsage(index uint64, d decoded) (Outcome, bool) {
	switch d.typ {
	case TypeRecordUsage:
		return applyBody(index, d, s.recordUsage), true
	case TypeRollupUsage:
		return applyBody(index, d, s.rollupUsage), true
	case TypeRecordEnergy:
		return applyBody(index, d, s.recordEnergy), true
	}
	return Outcome{}, false
}

func (s *State) recordUsage(_ uint64, c *RecordUsage) Outcome {
	if c.Node == "" || c.Batch == 0 {
		return fail("invalid", "a usage batch needs its node and batch number")
	}
	if last, ok := s.UsageBatches[c.Node]; ok && c.Batch <= last {
		return value(usageResult{Duplicate: true}) // a retry: counted already
	}
	for i := range c.Buckets {
		b := c.Buckets[i]
		if b.Hours != 1 || b.Start%3600 != 0 || b.Key == "" {
			return fail("invalid", "usage bucket %d is not an hour bucket of a key", i)
		}
	}
	for i := range c.Buckets {
		s.addUsage(c.Buckets[i])
	}
	if s.UsageBatches == nil {
		s.UsageBatches = map[string]uint64{}
	}
	s.UsageBatches[c.Node] = c.Batch
	return value(usageResult{})
}

// addUsage adds b to its bucket.
func (s *State) addUsage(b UsageTotal) {
	k := UsageKey(&b)
	cur := s.Usage[k]
	if cur == nil {
		cp := b
		s.Usage[k] = &cp
		return
	}
	cur.Requests += b.Requests
	cur.Errors += b.Errors
	cur.PromptTokens += b.PromptTokens
	cur.CompletionTokens += b.CompletionTokens
	cur.TTFTMs += b.TTFTMs
	cur.TTFTCount += b.TTFTCount
}

func (s *State) rollupUsage(_ uint64, c *RollupUsage) Outcome {
	keys := make([]string, 0, len(s.Usage))
	for k := range s.Usage {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b := s.Usage[k]
		switch {
		case b.Hours == 24 && c.DropBefore > 0 && b.Start < c.DropBefore:
			delete(s.Usage, k)
		case b.Hours == 1 && b.Start < c.Before:
			delete(s.Usage, k)
			day := *b
			day.Start, day.Hours, day.Node = b.Start-b.Start%86400, 24, ""
			s.addUsage(day)
		}
	}
	s.rollupEnergy(c)
	return Outcome{}
}

// UsageList is the buckets that overlap [since, until) (Unix s; until 0:
// no end), sorted by start, key, model and node.
func (s *State) UsageList(since, until int64) []UsageTotal {
	var out []UsageTotal
	for _, b := range s.Usage {
		end := b.Start + b.Hours*3600
		if end <= since || (until > 0 && b.Start >= until) {
			continue
		}
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return UsageKey(&out[i]) < UsageKey(&out[j]) })
	return out
}
