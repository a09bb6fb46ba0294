// Package usage sums what the requests a node received used, by key,
// model, serving node and hour, and writes the sums into the replicated
// state in batches (state.RecordUsage): one raft write per flush
// interval, never one per request. A batch keeps its number until it is
// written, so a retry is recognised by the state and not counted twice;
// new usage waits in the next batch meanwhile. A node that dies loses
// what it had not written: at most the batch being written plus what it
// summed since (about two flush intervals of its requests).
package usage

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

// Event is one request's use. It holds no prompt or completion text.
type Event struct {
	Time                     time.Time
	Key, Model, Node         string
	PromptTokens, Completion int64
	Error                    bool
	// TTFT is the time to the first token (0: not measured).
	TTFT time.Duration
}

// Apply commits a command through the leader.
type Apply func(ctx context.Context, cmd state.Command) (state.Outcome, error)

// Recorder sums events into hour buckets and flushes them. It is safe for
// concurrent use.
type Recorder struct {
	self string
	now  func() time.Time

	mu        sync.Mutex
	cur       map[string]*state.UsageTotal
	pending   *state.RecordUsage
	lastBatch uint64
}

// New returns a Recorder for node self; now is the clock (nil: time.Now).
func New(self string, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{self: self, now: now, cur: map[string]*state.UsageTotal{}}
}

// Add counts one request.
func (r *Recorder) Add(e Event) {
	b := state.UsageTotal{Start: e.Time.Unix() / 3600 * 3600, Hours: 1, Key: e.Key, Model: e.Model, Node: e.Node}
	k := state.UsageKey(&b)
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.cur[k]
	if cur == nil {
		cur = &b
		r.cur[k] = cur
	}
	cur.Requests++
	cur.PromptTokens += e.PromptTokens
	cur.CompletionTokens += e.Completion
	if e.Error {
		cur.Errors++
	}
	if e.TTFT > 0 {
		cur.TTFTMs += e.TTFT.Milliseconds()
		cur.TTFTCount++
	}
}

// batch is the batch to write: the one not yet written, else a new one of
// what was summed since (nil when nothing was).
func (r *Recorder) batch() *state.RecordUsage {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending != nil || len(r.cur) == 0 {
		return r.pending
	}
	b := &state.RecordUsage{Node: r.self, Batch: max(uint64(r.now().UnixNano()), r.lastBatch+1)}
	for _, u := range r.cur {
		b.Buckets = append(b.Buckets, *u)
	}
	sort.Slice(b.Buckets, func(i, j int) bool {
		return state.UsageKey(&b.Buckets[i]) < state.UsageKey(&b.Buckets[j])
	})
	r.cur = map[string]*state.UsageTotal{}
	r.pending, r.lastBatch = b, b.Batch
	return b
}

// Flush writes one batch, the same one again after a failure.
func (r *Recorder) Flush(ctx context.Context, apply Apply) error {
	b := r.batch()
	if b == nil {
		return nil
	}
	_, err := apply(ctx, state.Command{Type: state.TypeRecordUsage, Flags: state.FlagIgnorable, Body: *b})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.pending = nil
	r.mu.Unlock()
	return nil
}
