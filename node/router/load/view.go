package load

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// ViewConfig configures a View. Zero fields take the defaults.
type ViewConfig struct {
	// StaleAfter: a report at least this old is Unknown
	// (0: DefaultStaleAfter).
	StaleAfter time.Duration
	// DownAfter: a peer without a report for at least this long, counted
	// from its last report or else from when Track first listed it, is
	// Unhealthy (0: DefaultDownAfter).
	DownAfter time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// View is what this node knows of its peers' load: each peer's last
// report, when it arrived, and the requests this node has sent the peer
// since. It is safe for concurrent use; Load is one map lookup under a
// read lock.
type View struct {
	staleAfter, downAfter time.Duration
	now                   func() time.Time

	mu    sync.RWMutex
	peers map[string]*peerState
}

// peerState is one peer as the View knows it.
type peerState struct {
	reported bool
	seq      uint64
	models   map[string]Model
	recv     time.Time // when the last accepted report arrived
	since    time.Time // when Track first listed the peer (zero: never)
	// lost: the peer's feed broke after its last report, which is then
	// Unknown at once rather than when it ages.
	lost bool

	// gen changes whenever pending is reset, so that a done func from an
	// older generation does not take back a count the reset already did.
	gen     uint64
	pending map[string]int
	// outstanding counts the requests sent there that have not ended;
	// reports do not reset it.
	outstanding map[string]int
}

// NewView returns an empty View.
func NewView(cfg ViewConfig) *View {
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = DefaultStaleAfter
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = DefaultDownAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &View{
		staleAfter: cfg.StaleAfter,
		downAfter:  cfg.DownAfter,
		now:        cfg.Now,
		peers:      make(map[string]*peerState),
	}
}

// Update stores r as r.Node's last report, received now, and reports
// whether it was accepted. A report whose Seq is not above the last one is
// a late duplicate and ignored, unless it says the node restarted (Seq 1,
// or below half the last Seq). An accepted report resets the node's
// pending counts: it includes those requests as running or queued.
func (v *View) Update(r Report) bool {
	now := v.now()
	models := maps.Clone(r.Models)

	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.peer(r.Node)
	if p.reported && !newer(r.Seq, p.seq) {
		return false
	}
	p.reported = true
	p.seq = r.Seq
	p.models = models
	p.recv = now
	p.lost = false
	p.gen++
	clear(p.pending)
	return true
}

// newer reports whether a report numbered seq supersedes one numbered
// last: it is later, or its node restarted and counts from 1 again.
func newer(seq, last uint64) bool {
	return seq > last || (seq == 1 && last > 1) || seq < last/2
}

// Sent counts one request this node is sending to node's replica of model
// as pending, until done is called or node's next report is accepted,
// whichever comes first. done may be called any number of times.
func (v *View) Sent(node, model string) (done func()) {
	v.mu.Lock()
	p := v.peer(node)
	gen := p.gen
	p.pending[model]++
	p.outstanding[model]++
	v.mu.Unlock()

	var called atomic.Bool
	return func() {
		if !called.CompareAndSwap(false, true) {
			return
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.peers[node] != p {
			return // the peer was dropped
		}
		decrement(p.outstanding, model)
		if p.gen == gen { // not reset by a report since
			decrement(p.pending, model)
		}
	}
}

func decrement(m map[string]int, key string) {
	if m[key] <= 1 {
		delete(m, key)
		return
	}
	m[key]--
}

// Load returns node's replica of model as this node sees it: the last
// report's figures (zero if none), the pending requests, the report's age
// (0 if none) and health.
func (v *View) Load(node, model string) Load {
	now := v.now()
	v.mu.RLock()
	defer v.mu.RUnlock()
	p := v.peers[node]
	if p == nil {
		return Load{Health: Unknown}
	}
	l := Load{Model: p.models[model], Pending: p.pending[model], Outstanding: p.outstanding[model]}
	l.Health, l.Age = v.health(p, now)
	return l
}

// Health returns node's health.
func (v *View) Health(node string) Health {
	now := v.now()
	v.mu.RLock()
	defer v.mu.RUnlock()
	h, _ := v.health(v.peers[node], now)
	return h
}

// health returns p's health at now and its report's age (0 if none).
func (v *View) health(p *peerState, now time.Time) (Health, time.Duration) {
	switch {
	case p == nil:
		return Unknown, 0
	case p.reported:
		age := max(now.Sub(p.recv), 0)
		h := v.classify(age)
		if p.lost && h == Fresh {
			h = Unknown
		}
		return h, age
	case p.since.IsZero():
		return Unknown, 0
	case now.Sub(p.since) >= v.downAfter:
		return Unhealthy, 0
	default:
		return Unknown, 0
	}
}

// classify maps the age of a peer's last report to a health.
func (v *View) classify(age time.Duration) Health {
	switch {
	case age < v.staleAfter:
		return Fresh
	case age < v.downAfter:
		return Unknown
	default:
		return Unhealthy
	}
}

// Lost says that node's feed broke: its last report is Unknown from now
// on, and Unhealthy once it is DownAfter old, until a new one arrives.
func (v *View) Lost(node string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p := v.peers[node]; p != nil {
		p.lost = true
	}
}

// Track sets the peers to keep: it drops every other one with its report
// and pending counts, and starts the DownAfter clock of each peer listed
// for the first time.
func (v *View) Track(nodes []string) {
	now := v.now()
	keep := make(map[string]struct{}, len(nodes))
	for _, n := range nodes {
		keep[n] = struct{}{}
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	for n := range v.peers {
		if _, ok := keep[n]; !ok {
			delete(v.peers, n)
		}
	}
	for n := range keep {
		if p := v.peer(n); p.since.IsZero() {
			p.since = now
		}
	}
}

// peer returns node's state, creating it if need be. v.mu must be held
// for writing.
func (v *View) peer(node string) *peerState {
	p := v.peers[node]
	if p == nil {
		p = &peerState{pending: make(map[string]int), outstanding: make(map[string]int)}
		v.peers[node] = p
	}
	return p
}
