package bench

import (
	"hash/fnv"
	"sync"
)

// Prompt is a prompt as a prefix cache sees it: one chained hash per
// segment (a chat message), covering it and every segment before it, and
// the prompt's tokens up to and including each segment.
type Prompt struct {
	Hashes []uint64
	Tokens []int
}

// NewPrompt chains segments given as their identifying text and their
// token counts (same length).
func NewPrompt(texts []string, tokens []int) Prompt {
	p := Prompt{Hashes: make([]uint64, len(texts)), Tokens: make([]int, len(texts))}
	h := fnv.New64a()
	total := 0
	for i, t := range texts {
		_, _ = h.Write([]byte(t))
		_, _ = h.Write([]byte{0xff})
		total += tokens[i]
		p.Hashes[i], p.Tokens[i] = h.Sum64(), total
	}
	return p
}

// Total is the prompt's length in tokens.
func (p Prompt) Total() int {
	if len(p.Tokens) == 0 {
		return 0
	}
	return p.Tokens[len(p.Tokens)-1]
}

// PrefixCaches model the prompt caches of the servers the oracle sends
// to: a server holds every prefix of every prompt it has answered (with
// the answer appended), and a new prompt finds the longest run of leading
// segments it holds, as ollama-sim's prefix cache does. Nothing is
// evicted: the benchmark's runs stay far below the simulator's bound.
// It is safe for concurrent use.
type PrefixCaches struct {
	mu   sync.Mutex
	held []map[uint64]bool
}

// NewPrefixCaches returns the empty caches of n servers.
func NewPrefixCaches(n int) *PrefixCaches {
	c := &PrefixCaches{held: make([]map[uint64]bool, n)}
	for i := range c.held {
		c.held[i] = map[uint64]bool{}
	}
	return c
}

// Cached returns the tokens of p that server finds in its cache; at least
// one token is always evaluated, so it is below p's total.
func (c *PrefixCaches) Cached(server int, p Prompt) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	cached := 0
	for i, h := range p.Hashes {
		if !c.held[server][h] {
			break
		}
		cached = p.Tokens[i]
	}
	return max(0, min(cached, p.Total()-1))
}

// Remember records that server answered p: its prefixes are cached there.
func (c *PrefixCaches) Remember(server int, p Prompt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range p.Hashes {
		c.held[server][h] = true
	}
}
