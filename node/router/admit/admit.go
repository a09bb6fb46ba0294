// Package admit is a node's admission queue per model. The node's Ollama
// runs at most Slots generations of a model at once; requests beyond that
// wait here, not in Ollama, so the node knows exactly how many run and how
// many wait, and can be fair between API keys: a freed slot goes to the
// keys that have waiters in turn (round-robin), each key's waiters in
// arrival order. A full queue refuses a key that already holds its share of
// the waiting places, and otherwise makes room by pushing out the newest
// waiter of the key that holds the most. Requests whose estimated wait
// exceeds the queue's Timeout are refused at once rather than after a long
// hang.
package admit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Config sets up a Queue.
type Config struct {
	// Slots is how many generations run at once; 0 or less means 1.
	Slots int
	// MaxQueue is how many requests may wait for a slot; 0 or less means
	// none: a request that finds every slot busy is refused.
	MaxQueue int
	// Timeout is the longest a request waits for a slot; 0 or less means
	// no bound other than the request's context.
	Timeout time.Duration
	// Now is the clock used to measure waits and hold times; nil means
	// time.Now. Timeouts always run on the real clock.
	Now func() time.Time
	// IdleExpiry is how long a Group keeps a model's queue that nothing
	// runs in or waits for; 0 or less means for ever.
	IdleExpiry time.Duration
	// Changed, when set, is called (without the queue's lock) after a
	// request took a slot or a place in the queue and after a slot was
	// released: the queue's Stats changed. It must not block.
	Changed func()
}

// normalize applies the documented defaults.
func (c Config) normalize() Config {
	c.Slots = max(c.Slots, 1)
	c.MaxQueue = max(c.MaxQueue, 0)
	c.Timeout = max(c.Timeout, 0)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Stats is a queue's load at one moment.
type Stats struct {
	Running int // tickets held
	Queued  int // requests waiting for a slot
	Slots   int // generations allowed at once
}

// minHoldSamples is how many releases the hold-time average needs before
// the queue refuses requests for their estimated wait.
const minHoldSamples = 5

// holdAlpha is the weight of the newest sample in the hold-time average.
const holdAlpha = 0.2

// Queue is one model's admission queue. It is safe for concurrent use.
type Queue struct {
	maxQueue int
	timeout  time.Duration
	now      func() time.Time
	changed  func()

	mu      sync.Mutex
	slots   int
	running int
	wait    fairQueue
	held    int     // tickets released, for the hold-time average
	hold    float64 // moving average of hold times, in nanoseconds
}

// New returns an empty queue.
func New(cfg Config) *Queue {
	cfg = cfg.normalize()
	changed := cfg.Changed
	if changed == nil {
		changed = func() {}
	}
	return &Queue{maxQueue: cfg.MaxQueue, timeout: cfg.Timeout, now: cfg.Now, slots: cfg.Slots, changed: changed}
}

// Ticket is a held slot. Release it when the generation ends.
type Ticket struct {
	q        *Queue
	start    time.Time
	waited   time.Duration
	released atomic.Bool
}

// Waited is how long the request waited for its slot; 0 when one was free.
func (t *Ticket) Waited() time.Duration { return t.waited }

// Release frees the slot and hands it to the next waiter. Calls after the
// first do nothing.
func (t *Ticket) Release() {
	if !t.released.CompareAndSwap(false, true) {
		return
	}
	q := t.q
	defer q.changed()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sample(q.now().Sub(t.start))
	q.running--
	q.dispatch()
}

// Acquire returns a slot for a request of API key key ("" is a key of its
// own), waiting in the queue when every slot is busy. It returns a
// *RejectError when the request may not wait or waited too long, and the
// context's error (wrapped) when ctx ends first; a slot handed over at
// that same moment goes on to the next waiter.
func (q *Queue) Acquire(ctx context.Context, key string) (*Ticket, error) {
	if err := ctx.Err(); err != nil {
		return nil, cancelled(err)
	}
	q.mu.Lock()
	if q.running < q.slots {
		q.running++
		t := &Ticket{q: q, start: q.now()}
		q.mu.Unlock()
		q.changed()
		return t, nil
	}
	w, err := q.enqueue(key)
	q.mu.Unlock()
	if err != nil {
		return nil, err
	}
	q.changed()
	return q.await(ctx, w)
}

func cancelled(err error) error {
	return fmt.Errorf("admit: gave up waiting for a slot: %w", err)
}

// enqueue queues a request that found every slot busy, or says why it may
// not wait. Called with q.mu held.
func (q *Queue) enqueue(key string) (*waiter, error) {
	if q.maxQueue == 0 {
		return nil, saturatedError(q.running, q.slots, q.slotFreesIn())
	}
	full := q.wait.len() >= q.maxQueue
	if full {
		if err := q.checkShare(key); err != nil {
			return nil, err
		}
	}
	if est, ok := q.estimate(key); ok && q.timeout > 0 && est > q.timeout {
		return nil, waitTooLongError(est, q.timeout, q.wait.len(), q.slots)
	}
	if full {
		q.pushOut()
	}
	return q.wait.push(key, q.now()), nil
}

// checkShare refuses key when it holds at least its fair share of a full
// queue: MaxQueue split over the keys waiting, key included, rounded up.
func (q *Queue) checkShare(key string) error {
	held := q.wait.count(key)
	keys := q.wait.keyCount()
	if held == 0 {
		keys++
	}
	share := (q.maxQueue + keys - 1) / keys
	if held < share {
		return nil
	}
	est, _ := q.estimate(key)
	return overShareError(key, held, share, keys, q.wait.len(), q.slots, est)
}

// pushOut makes room in a full queue: the newest waiter of the key that
// holds the most waiting places is refused with ErrKeyOverShare.
func (q *Queue) pushOut() {
	v := q.wait.victim()
	held := v.kq.waiters.Len()
	queued := q.wait.len()
	q.wait.remove(v)
	est, _ := q.estimate(v.kq.name)
	v.err = pushedOutError(v.kq.name, held, queued, q.slots, q.now().Sub(v.since), est)
	v.state = stateRejected
	close(v.ready)
}

// await waits for the waiter's turn, its context's end or the timeout.
func (q *Queue) await(ctx context.Context, w *waiter) (*Ticket, error) {
	var expired <-chan time.Time
	if q.timeout > 0 {
		timer := time.NewTimer(q.timeout)
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case <-w.ready:
		return q.outcome(w)
	case <-ctx.Done():
		return nil, q.abandon(w, cancelled(ctx.Err()))
	case <-expired:
		return q.expire(w)
	}
}

// outcome turns a waiter that left the queue into Acquire's result.
func (q *Queue) outcome(w *waiter) (*Ticket, error) {
	if w.state == stateRejected {
		return nil, w.err
	}
	return &Ticket{q: q, start: w.grantedAt, waited: w.grantedAt.Sub(w.since)}, nil
}

// abandon withdraws a waiter whose caller has gone and returns err. A slot
// handed to it in the meantime goes to the next waiter or back to the pool.
func (q *Queue) abandon(w *waiter, err error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch w.state {
	case stateWaiting:
		q.withdraw(w)
	case stateGranted:
		q.running--
		q.dispatch()
	}
	return err
}

// expire ends a wait that reached the timeout. A slot handed over at that
// moment is kept: the request got it in time.
func (q *Queue) expire(w *waiter) (*Ticket, error) {
	q.mu.Lock()
	if w.state != stateWaiting {
		q.mu.Unlock()
		return q.outcome(w)
	}
	q.withdraw(w)
	est, _ := q.estimate(w.kq.name)
	err := timeoutError(q.timeout, q.now().Sub(w.since), q.wait.len(), q.slots, est-q.timeout)
	q.mu.Unlock()
	return nil, err
}

// withdraw takes a waiting waiter out of the queue. Called with q.mu held.
func (q *Queue) withdraw(w *waiter) {
	q.wait.remove(w)
	w.state = stateRejected
	close(w.ready)
}

// dispatch hands free slots to waiters in fair order. Called with q.mu
// held, after anything that may free a slot.
func (q *Queue) dispatch() {
	if q.running >= q.slots || q.wait.len() == 0 {
		return
	}
	now := q.now()
	for q.running < q.slots {
		w := q.wait.pop()
		if w == nil {
			return
		}
		q.running++
		w.state = stateGranted
		w.grantedAt = now
		close(w.ready)
	}
}

// SetSlots changes how many generations run at once; n of 0 or less means
// 1. Growing admits waiters at once; shrinking lets running generations
// finish and admits no one until fewer than n run.
func (q *Queue) SetSlots(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.slots = max(n, 1)
	q.dispatch()
}

// idle says whether nothing runs in or waits for q.
func (q *Queue) idle() bool {
	st := q.Stats()
	return st.Running == 0 && st.Queued == 0
}

// Stats returns the queue's load now.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{Running: q.running, Queued: q.wait.len(), Slots: q.slots}
}
