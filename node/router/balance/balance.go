// Package balance chooses one replica among the ready candidates of a
// request. It is pure: the router gives it the candidates with their live
// load and it returns a choice and the reason for it.
//
// The default policy, "ttf", estimates when the request would finish on
// each candidate (time waiting for a slot plus time to first token plus
// decode time, from the replica's queue, slots and measured speed) and
// picks the earliest. The time to first token depends on how much of the
// prompt the replica's cache already holds: a replica that served the
// earlier turns of a conversation evaluates only the new turn, the others
// the whole history, at the replica's measured cost per KiB. So a
// follow-up stays with its replica exactly while the prefill it saves
// there outweighs the extra wait, and a prefix that many replicas hold (a
// system prompt that every client sends) favours none of them.
// "round-robin" and "least-connections" exist to compare against.
package balance

import (
	"fmt"
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
	// OthersRate is the rate, per second, at which other nodes send the
	// replica requests: those sent since its load report are not in it.
	OthersRate float64
	// RunningFor is how long the replica's oldest running request has
	// run, where this node sees every request there (0: unknown): its
	// slot frees after the rest of a service time.
	RunningFor time.Duration
}

// Request is what the policy knows of a request.
type Request struct {
	// Model is the Ollama tag; round-robin turns per model.
	Model string
	// MaxTokens is the answer's bound when the client set one (0: none).
	MaxTokens int
	// Prefix are the prompt's chained prefix hashes (see PrefixKeys); nil
	// for requests without one.
	Prefix []uint64
	// PrefixBytes are the prompt's length in bytes up to and including
	// each prefix key (see PrefixBytes); nil when unknown.
	PrefixBytes []int
	// PromptBytes is the whole prompt's length in bytes (0: the last of
	// PrefixBytes).
	PromptBytes int
}

// promptBytes is the whole prompt's length in bytes, as far as known.
func (r Request) promptBytes() int {
	if n := len(r.PrefixBytes); n > 0 {
		return max(r.PromptBytes, r.PrefixBytes[n-1])
	}
	return r.PromptBytes
}

// heldBytes is how many bytes of the prompt the first keys cover.
func (r Request) heldBytes(keys int) int {
	if keys <= 0 || keys > len(r.PrefixBytes) {
		return 0
	}
	return r.PrefixBytes[keys-1]
}

// Config configures a Balancer.
type Config struct {
	Policy Policy
	// Factor below 1 turns prefix affinity off: the estimate then
	// ignores what replicas' caches hold (0: DefaultFactor, on). Other
	// values bound nothing any more: the prefill a cache saves is weighed
	// in time against the wait.
	Factor float64
	// Affinity is how many prompt prefixes the table remembers
	// (DefaultAffinity when 0).
	Affinity int
	// Rand, when set, replaces the random source of tie breaks (tests).
	Rand *rand.Rand
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
	return &Balancer{policy: cfg.Policy, factor: cfg.Factor, aff: NewAffinity(cfg.Affinity), rnd: rnd,
		rr: map[string]*atomic.Uint64{}}
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
		busy := make([]float64, len(cands))
		for i, c := range cands {
			busy[i] = float64(c.Load.Busy())
		}
		return b.argmin(busy), ReasonLeastConns
	}
	return b.timeToFinish(req, cands)
}

// timeToFinish picks the candidate expected to finish req first, given
// what each one's cache holds of its prompt.
func (b *Balancer) timeToFinish(req Request, cands []Candidate) (int, Reason) {
	score, plain, bytes := b.finish(req, cands)
	i := b.argmin(score)
	if cacheDecided(i, score, plain, bytes) {
		return i, ReasonAffinity
	}
	return i, ReasonTTF
}

// Finish is the time, in milliseconds, each candidate is expected to take
// to answer req, as the time-to-finish policy weighs them (the hop to
// another node included).
func (b *Balancer) Finish(req Request, cands []Candidate) []float64 {
	score, _, _ := b.finish(req, cands)
	return score
}

// finish estimates each candidate's time to answer req given what its
// cache holds (score), were no cache to hold anything (plain), and how
// many bytes of the prompt its cache holds.
func (b *Balancer) finish(req Request, cands []Candidate) (score, plain []float64, bytes []int) {
	est := newEstimator(cands, req.MaxTokens)
	whole := float64(req.promptBytes()) / 1024
	held := b.held(req)
	score, plain = make([]float64, len(cands)), make([]float64, len(cands))
	bytes = make([]int, len(cands))
	for i, c := range cands {
		bytes[i] = req.heldBytes(held[c.Node])
		score[i] = est.finish(i, c, whole-float64(bytes[i])/1024)
		plain[i] = est.finish(i, c, whole)
	}
	return score, plain, bytes
}

// cacheDecided says whether what candidate i's cache holds made it win:
// another candidate holding less would, were no cache to hold anything,
// have done at least as well.
func cacheDecided(i int, score, plain []float64, held []int) bool {
	for j := range plain {
		if j != i && held[i] > held[j] && plain[j] <= plain[i]*(1+1e-9) && score[i] < score[j] {
			return true
		}
	}
	return false
}

// held is how many leading prefix keys of req each node holds; nil when
// affinity is off.
func (b *Balancer) held(req Request) map[string]int {
	if b.factor < 1 || len(req.Prefix) == 0 {
		return nil
	}
	return b.aff.Held(req.Prefix)
}

// Served records that node serves req: its cache will hold every prefix
// of req's prompt.
func (b *Balancer) Served(req Request, node string) {
	if len(req.Prefix) > 0 && b.factor >= 1 {
		b.aff.Record(req.Prefix, node)
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

// argmin returns the index of the lowest score, breaking ties at random
// so equal replicas share the load.
func (b *Balancer) argmin(scores []float64) int {
	best, ties := -1, 0
	var bestScore float64
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, s := range scores {
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
