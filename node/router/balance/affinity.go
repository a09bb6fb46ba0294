package balance

import (
	"hash/fnv"
	"math"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/sovra/sovra/node/router/load"
)

// Affinity remembers which replica served a conversation prefix. Each
// node records the requests it dispatches and the ones its own Ollama
// serves; the latter it also publishes (Recent) so that peers learn them
// through the load exchange and a follow-up finds its replica whichever
// node it enters by.
type Affinity struct {
	table *lru.Cache[uint64, string]

	mu     sync.Mutex
	recent []uint64 // ring of keys served here, newest at (seq-1)%len
	seq    uint64
}

// recentKeys bounds the keys a node publishes at once: more than a load
// interval's worth of requests on any realistic node.
const recentKeys = 1024

// NewAffinity returns a table of size prefixes.
func NewAffinity(size int) *Affinity {
	t, err := lru.New[uint64, string](size)
	if err != nil {
		panic(err) // size > 0 by construction
	}
	return &Affinity{table: t, recent: make([]uint64, recentKeys)}
}

// Record notes that node served (or is serving) the prefix key.
func (a *Affinity) Record(key uint64, node string) { a.table.Add(key, node) }

// Publish records key as served by node self and offers it to peers.
func (a *Affinity) Publish(key uint64, self string) {
	a.Record(key, self)
	a.mu.Lock()
	a.recent[a.seq%recentKeys] = key
	a.seq++
	a.mu.Unlock()
}

// Recent returns the keys published after sequence number after (at most
// the last recentKeys) and the sequence number to ask after next time.
func (a *Affinity) Recent(after uint64) ([]uint64, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if after > a.seq {
		after = 0 // the publisher restarted
	}
	from := max(after, a.seq-min(a.seq, recentKeys))
	out := make([]uint64, 0, a.seq-from)
	for s := from; s < a.seq; s++ {
		out = append(out, a.recent[s%recentKeys])
	}
	return out, a.seq
}

// Merge records keys a peer served.
func (a *Affinity) Merge(node string, keys []uint64) {
	for _, k := range keys {
		a.table.Add(k, node)
	}
}

// Lookup returns the replica that served the longest recorded prefix of
// the conversation, and how many of its keys matched.
func (a *Affinity) Lookup(prefix []uint64) (string, int, bool) {
	for i := len(prefix) - 1; i >= 0; i-- {
		if node, ok := a.table.Get(prefix[i]); ok {
			return node, i + 1, true
		}
	}
	return "", 0, false
}

// affine returns the candidate that holds the request's conversation
// prefix, when there is one and its load is within the bound.
func (b *Balancer) affine(req Request, cands []Candidate, eligible allowed, est estimator) (int, bool) {
	if len(req.Prefix) == 0 || b.factor < 1 {
		return 0, false
	}
	node, _, ok := b.aff.Lookup(req.Prefix)
	if !ok {
		return 0, false
	}
	for i, c := range cands {
		if c.Node == node {
			return i, eligible.has(node) && b.withinBound(cands, i, est)
		}
	}
	return 0, false
}

// withinBound says whether candidate i may take one more request under
// bounded-load affinity: it has a free slot, or its load after taking it
// stays within Factor times its share of the cluster's load by capacity
// (consistent hashing with bounded loads, weighted by capacity).
func (b *Balancer) withinBound(cands []Candidate, i int, est estimator) bool {
	l := cands[i].Load
	if l.Busy() < max(1, l.Slots) && l.Health == load.Fresh {
		return true
	}
	var busy, capTotal float64
	for _, c := range cands {
		busy += float64(c.Load.Busy())
		capTotal += est.capacity(c.Load.Model)
	}
	allowed := math.Ceil(b.factor * (busy + 1) * est.capacity(l.Model) / capTotal)
	return float64(l.Busy()+1) <= allowed
}

// PrefixKeys returns the chained hashes of a conversation: key i covers
// the model and messages 0..i. Two requests that share their first k
// messages share their first k keys, on every node.
func PrefixKeys(model string, msgs []Message) []uint64 {
	if len(msgs) == 0 {
		return nil
	}
	keys := make([]uint64, len(msgs))
	h := fnv.New64a()
	_, _ = h.Write([]byte(model))
	var sep = []byte{0}
	for i, m := range msgs {
		_, _ = h.Write(sep)
		_, _ = h.Write([]byte(m.Role))
		_, _ = h.Write(sep)
		_, _ = h.Write([]byte(m.Content))
		keys[i] = h.Sum64()
	}
	return keys
}

// Message is the part of a chat message that identifies a prefix.
type Message struct {
	Role, Content string
}
