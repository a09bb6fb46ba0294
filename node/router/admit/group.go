package admit

import (
	"sync"
	"sync/atomic"
)

// Group holds one Queue per model, each created on first use with the
// group's Config. A queue left idle (nothing running or waiting) for
// Config.IdleExpiry is dropped when a new queue is made, so models asked
// for once do not hold a queue for ever. It is safe for concurrent use.
type Group struct {
	cfg Config

	mu     sync.RWMutex
	queues map[string]*entry
}

// entry is a queue and when it was last handed out (Unix nanoseconds of
// cfg.Now).
type entry struct {
	q    *Queue
	used atomic.Int64
}

// NewGroup returns a group without queues.
func NewGroup(cfg Config) *Group {
	cfg = cfg.normalize()
	return &Group{cfg: cfg, queues: make(map[string]*entry)}
}

// Queue returns the model's queue, creating it on first use.
func (g *Group) Queue(model string) *Queue {
	now := g.cfg.Now().UnixNano()
	g.mu.RLock()
	e := g.queues[model]
	if e != nil {
		// Under the read lock, so that no sweep drops the queue
		// between its lookup and this mark.
		e.used.Store(now)
	}
	g.mu.RUnlock()
	if e != nil {
		return e.q
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if e = g.queues[model]; e == nil {
		g.sweep(now)
		e = &entry{q: New(g.cfg)}
		g.queues[model] = e
	}
	e.used.Store(now)
	return e.q
}

// sweep drops the queues idle past the expiry. Called with g.mu held.
func (g *Group) sweep(now int64) {
	if g.cfg.IdleExpiry <= 0 {
		return
	}
	cutoff := now - int64(g.cfg.IdleExpiry)
	for model, e := range g.queues {
		if e.used.Load() < cutoff && e.q.idle() {
			delete(g.queues, model)
		}
	}
}

// Stats returns the load of every model that has a queue.
func (g *Group) Stats() map[string]Stats {
	g.mu.RLock()
	queues := make(map[string]*Queue, len(g.queues))
	for model, e := range g.queues {
		queues[model] = e.q
	}
	g.mu.RUnlock()
	out := make(map[string]Stats, len(queues))
	for model, q := range queues {
		out[model] = q.Stats()
	}
	return out
}
