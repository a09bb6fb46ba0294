// Package balance chooses one replica among the ready candidates of a
// request. It is pure: the router gives it the candidates with their live
// load and it returns a choice and the reason for it.
//
// The default policy, "ttf", estimates when the request would finish on
// each candidate (time waiting for a slot plus time to first token plus
// decode time, from the replica's queue, slots and measured speed) and
// picks the earliest. A conversation's follow-up turn prefers the replica
// that served its earlier turns, where the prefix is in Ollama's KV cache,
// unless that replica is loaded beyond Factor times the cluster average
// (bounded-load affinity). "round-robin" and "least-connections" exist to
// compare against.
package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sovra/sovra/node/router/load"
)

// Policy names a way of choosing among candidates.
type Policy string

// Policies.
const (
	TimeToFinish     Policy = "ttf"
	RoundRobin       Policy = "round-robin"
	LeastConnections Policy = "least-connections"
)

// ParsePolicy checks a policy name ("" is TimeToFinish).
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case "":
		return TimeToFinish, nil
	case TimeToFinish, RoundRobin, LeastConnections:
		return p, nil
	}
	return "", fmt.Errorf("unknown routing policy %q (want ttf, round-robin or least-connections)", s)
}

// Reason says why a replica was chosen; it labels metrics and the
// Sovra-Route response header.
type Reason string

// Reasons.
const (
	ReasonTTF        Reason = "ttf"
	ReasonAffinity   Reason = "affinity"
	ReasonRoundRobin Reason = "round-robin"
	ReasonLeastConns Reason = "least-connections"
	// ReasonOnly: there was one candidate.
	ReasonOnly Reason = "only"
)

// Candidate is a ready replica a request may go to.
type Candidate struct {
	// Node is the id of the node whose Ollama holds the replica.
	Node string
	Load load.Load
	// Hop is set for a replica on another node: reaching it costs a
	// forward, so on a tie this node's own replica wins.
	Hop bool
}

// Request is what the policy knows of a request.
type Request struct {
	// Model is the Ollama tag; round-robin turns per model.
	Model string
	// MaxTokens is the answer's bound when the client set one (0: none).
	MaxTokens int
	// Prefix are the conversation's chained prefix hashes (see
	// PrefixKeys); nil for requests without a conversation.
	Prefix []uint64
}

// Config configures a Balancer.
type Config struct {
	Policy Policy
	// Factor bounds affinity: a follow-up goes to the replica holding its
	// prefix only while that replica's load relative to its capacity is at
	// most Factor times the average (DefaultFactor when 0; below 1 turns
	// affinity off).
	Factor float64
	// Affinity is how many conversation prefixes the table remembers
	// (DefaultAffinity when 0).
	Affinity int
	// Rand, when set, replaces the random source of tie breaks (tests).
	Rand *rand.Rand
	// Now is the clock of the conversation share meter (time.Now).
	Now func() time.Time
}

// Defaults.
const (
	DefaultFactor   = 1.25
	DefaultAffinity = 1 << 16
)

// Balancer chooses replicas. It is safe for concurrent use.
type Balancer struct {
	policy Policy
	factor float64
	aff    *Affinity
	shares *shares

	mu  sync.Mutex // guards rnd
	rnd *rand.Rand

	rrMu sync.Mutex
	rr   map[string]*atomic.Uint64
}

// New returns a Balancer.
func New(cfg Config) *Balancer {
	if cfg.Policy == "" {
		cfg.Policy = TimeToFinish
	}
	if cfg.Factor == 0 {
		cfg.Factor = DefaultFactor
	}
	if cfg.Affinity <= 0 {
		cfg.Affinity = DefaultAffinity
	}
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Balancer{policy: cfg.Policy, factor: cfg.Factor, aff: NewAffinity(cfg.Affinity), rnd: rnd,
		rr: map[string]*atomic.Uint64{}, shares: newShares(cfg.Now)}
}

// Policy is the balancer's policy.
func (b *Balancer) Policy() Policy { return b.policy }

// Affinity is the table of which replica served which conversation.
func (b *Balancer) Affinity() *Affinity { return b.aff }

// Pick returns the index in cands of the replica req should go to, and
// why. cands must not be empty; their order should be stable (by node id)
// for round-robin to be fair.
func (b *Balancer) Pick(req Request, cands []Candidate) (int, Reason) {
	if len(cands) == 1 {
		return 0, ReasonOnly
	}
	switch b.policy {
	case RoundRobin:
		return b.roundRobin(req.Model, len(cands)), ReasonRoundRobin
	case LeastConnections:
		return b.argmin(cands, func(c Candidate) float64 { return float64(c.Load.Busy()) }), ReasonLeastConns
	}
	est := newEstimator(cands, req.MaxTokens)
	eligible := b.eligible(req, cands, est)
	if i, ok := b.affine(req, cands, eligible, est); ok {
		return i, ReasonAffinity
	}
	return b.argmin(cands, func(c Candidate) float64 {
		if !eligible.has(c.Node) {
			return math.Inf(1)
		}
		return est.finish(c)
	}), ReasonTTF
}

// allowed are the nodes a request may go to; nil allows every candidate.
type allowed map[string]bool

func (a allowed) has(node string) bool { return a == nil || a[node] }

// conversation says whether a request is part of a conversation whose
// later turns will follow it: it carries more than one message (a system
// prompt, or earlier turns).
func conversation(req Request) bool { return len(req.Prefix) > 1 }

// eligible are the candidates a request may go to. A conversation may not
// go to a node that already took more than Factor times its share of
// capacity of this balancer's recent conversation requests, while another
// has room; other requests may go anywhere (nil).
func (b *Balancer) eligible(req Request, cands []Candidate, est estimator) allowed {
	if !conversation(req) || b.factor < 1 {
		return nil
	}
	capacity := make([]float64, len(cands))
	for i, c := range cands {
		capacity[i] = est.capacity(c.Load.Model)
	}
	over := b.shares.over(cands, capacity, b.factor)
	ok := make(allowed, len(cands))
	for i, c := range cands {
		ok[c.Node] = !over[i]
	}
	for _, room := range ok {
		if room {
			return ok
		}
	}
	return nil // every node is over its share: none is preferred
}

// Served records that node serves req, so its follow-ups prefer it.
func (b *Balancer) Served(req Request, node string) {
	if len(req.Prefix) > 0 && b.factor >= 1 {
		b.aff.Record(req.Prefix[len(req.Prefix)-1], node)
	}
	if conversation(req) && b.policy == TimeToFinish {
		b.shares.add(node)
	}
}

func (b *Balancer) roundRobin(model string, n int) int {
	b.rrMu.Lock()
	c, ok := b.rr[model]
	if !ok {
		c = new(atomic.Uint64)
		b.rr[model] = c
	}
	b.rrMu.Unlock()
	return int((c.Add(1) - 1) % uint64(n))
}

// argmin returns the candidate with the lowest score, breaking ties at
// random so equal replicas share the load.
func (b *Balancer) argmin(cands []Candidate, score func(Candidate) float64) int {
	best, ties := -1, 0
	var bestScore float64
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, c := range cands {
		s := score(c)
		switch {
		case best < 0 || s < bestScore:
			best, bestScore, ties = i, s, 1
		case s == bestScore:
			ties++
			if b.rnd.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best
}
