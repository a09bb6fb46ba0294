package admit

import (
	"maps"
	"sync"
)

// Group holds one Queue per model, each created on first use with the
// group's Config. It is safe for concurrent use.
type Group struct {
	cfg Config

	mu     sync.RWMutex
	queues map[string]*Queue
}

// NewGroup returns a group without queues.
func NewGroup(cfg Config) *Group {
	return &Group{cfg: cfg, queues: make(map[string]*Queue)}
}

// Queue returns the model's queue, creating it on first use.
func (g *Group) Queue(model string) *Queue {
	g.mu.RLock()
	q := g.queues[model]
	g.mu.RUnlock()
	if q != nil {
		return q
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if q = g.queues[model]; q == nil {
		q = New(g.cfg)
		g.queues[model] = q
	}
	return q
}

// Stats returns the load of every model that has a queue.
func (g *Group) Stats() map[string]Stats {
	g.mu.RLock()
	queues := maps.Clone(g.queues)
	g.mu.RUnlock()
	out := make(map[string]Stats, len(queues))
	for model, q := range queues {
		out[model] = q.Stats()
	}
	return out
}
