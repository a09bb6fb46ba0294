package balance

import (
	"hash/fnv"
	"slices"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Affinity remembers which replicas hold a prompt prefix in their cache:
// Ollama keeps the prompts it served, so a replica that served a request
// holds every prefix of it. Each node records the requests it dispatches
// and the ones its own Ollama serves; the latter it also publishes
// (Recent) so that peers learn them through the load exchange and a
// follow-up finds its replica whichever node it enters by. A prefix
// shared by many requests (a common system prompt) is soon held by many
// replicas, and then draws a request to none of them in particular.
type Affinity struct {
	mu    sync.Mutex // serializes read-modify-write of a key's holders
	table *lru.Cache[uint64, []string]

	rmu    sync.Mutex
	recent []uint64 // ring of keys served here, newest at (seq-1)%len
	seq    uint64
}

const (
	// recentKeys bounds the keys a node publishes at once: more than a
	// load interval's worth of requests on any realistic node.
	recentKeys = 4096
	// maxHolders bounds the replicas remembered per key, newest first.
	maxHolders = 16
)

// NewAffinity returns a table of size prefixes.
func NewAffinity(size int) *Affinity {
	t, err := lru.New[uint64, []string](size)
	if err != nil {
		panic(err) // size > 0 by construction
	}
	return &Affinity{table: t, recent: make([]uint64, recentKeys)}
}

// Record notes that node holds (or is about to hold) the prefixes keys.
func (a *Affinity) Record(keys []uint64, node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range keys {
		old, _ := a.table.Peek(k)
		if len(old) > 0 && old[0] == node {
			a.table.Get(k) // refresh its recency
			continue
		}
		hs := make([]string, 0, min(len(old)+1, maxHolders))
		hs = append(hs, node)
		for _, h := range old {
			if h != node && len(hs) < maxHolders {
				hs = append(hs, h)
			}
		}
		a.table.Add(k, hs)
	}
}

// Publish records keys as held by node self and offers them to peers.
func (a *Affinity) Publish(keys []uint64, self string) {
	a.Record(keys, self)
	a.rmu.Lock()
	defer a.rmu.Unlock()
	for _, k := range keys {
		a.recent[a.seq%recentKeys] = k
		a.seq++
	}
}

// Recent returns the keys published after sequence number after (at most
// the last recentKeys) and the sequence number to ask after next time.
func (a *Affinity) Recent(after uint64) ([]uint64, uint64) {
	a.rmu.Lock()
	defer a.rmu.Unlock()
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
func (a *Affinity) Merge(node string, keys []uint64) { a.Record(keys, node) }

// Held returns how many leading keys of prefix each node holds (nodes
// holding none are left out).
func (a *Affinity) Held(prefix []uint64) map[string]int {
	out := map[string]int{}
	for i := len(prefix) - 1; i >= 0; i-- {
		hs, ok := a.table.Get(prefix[i])
		if !ok {
			continue
		}
		for _, h := range hs {
			if _, seen := out[h]; !seen {
				out[h] = i + 1
			}
		}
	}
	return out
}

// HeldBy returns how many leading keys of prefix node holds.
func (a *Affinity) HeldBy(prefix []uint64, node string) int {
	for i := len(prefix) - 1; i >= 0; i-- {
		if hs, ok := a.table.Get(prefix[i]); ok && slices.Contains(hs, node) {
			return i + 1
		}
	}
	return 0
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

// PrefixBytes returns, for each message, the prompt's length in bytes up
// to and including it (role and content): the lengths PrefixKeys' keys
// cover.
func PrefixBytes(msgs []Message) []int {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]int, len(msgs))
	total := 0
	for i, m := range msgs {
		total += len(m.Role) + len(m.Content)
		out[i] = total
	}
	return out
}

// Message is the part of a chat message that identifies a prefix.
type Message struct {
	Role, Content string
}
