// Package quota enforces API keys' limits (requests and tokens per
// minute, concurrent requests, tokens per UTC day and month) across the
// whole cluster without raft: each node counts what the keys it admitted
// use, reports those counts to its peers in the load exchange (Report,
// Learn), and admits a request against the cluster-wide sum it knows.
//
// A peer's counts reach this node up to one exchange late, so two nodes
// could both spend the same remainder. To bound that, a node may spend,
// within any ShareWindow (longer than a report's age), at most its share
// of what was left: ceil(remaining/nodes). While every report is younger
// than ShareWindow, the nodes together overshoot a request limit by at
// most nodes-1 (the rounding) and a token limit by at most one request's
// tokens per node; the completion tokens of requests in flight are counted
// when they settle, so a token limit is also exceeded by those (README,
// "Quotas and usage", has the measured figures).
package quota

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

// Window is the span of the per-minute limits.
const Window = time.Minute

// Defaults of Config.
const (
	DefaultShareWindow = time.Second
	// DefaultConcurrentTTL: a peer's in-flight count older than this is
	// not counted (the peer may be gone).
	DefaultConcurrentTTL = 3 * time.Second
)

// ErrLimited is what a *LimitError is.
var ErrLimited = errors.New("quota: over the key's limit")

// LimitError is a request refused because its key is over a limit.
type LimitError struct {
	// Limit names it: requests_per_minute, tokens_per_minute, concurrent,
	// tokens_per_day or tokens_per_month.
	Limit      string
	Value      int64
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("Rate limit reached for this key: %s %d; retry in %s", e.Limit, e.Value, e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrLimited) hold.
func (e *LimitError) Is(target error) bool { return target == ErrLimited }

// Config configures a Limiter.
type Config struct {
	// Self is this node's id (its own reports are never learnt).
	Self string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Nodes is how many nodes may admit requests (nil or < 1: 1).
	Nodes func() int
	// ShareWindow (0: DefaultShareWindow) and ConcurrentTTL (0:
	// DefaultConcurrentTTL); see the package comment.
	ShareWindow   time.Duration
	ConcurrentTTL time.Duration
	// Recorded, when set, is the key's tokens in the UTC day and month of
	// now that the replicated usage records hold (all nodes, written every
	// flush interval). A key's day and month are at least these, so a
	// budget holds across node restarts, which forget their own counts.
	Recorded func(key string, now time.Time) (day, month int64)
}

// Limiter admits requests against their keys' limits. It is safe for
// concurrent use.
type Limiter struct {
	cfg   Config
	mu    sync.Mutex
	keys  map[string]*keyState
	peers map[string]peerReport
}

// keyState is what this node admitted for one key.
type keyState struct {
	minute   ring // the last Window, in seconds
	recent   ring // the last ShareWindow, in tenths
	inflight int64
	day      period
	month    period
}

// period counts tokens in one UTC day or month (n numbers it).
type period struct{ n, tokens int64 }

func (p *period) add(n, tokens int64) {
	if p.n != n {
		p.n, p.tokens = n, 0
	}
	p.tokens += tokens
}

type peerReport struct {
	keys map[string]Usage
	recv time.Time
}

// New returns a Limiter.
func New(cfg Config) *Limiter {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ShareWindow <= 0 {
		cfg.ShareWindow = DefaultShareWindow
	}
	if cfg.ConcurrentTTL <= 0 {
		cfg.ConcurrentTTL = DefaultConcurrentTTL
	}
	return &Limiter{cfg: cfg, keys: map[string]*keyState{}, peers: map[string]peerReport{}}
}

func (l *Limiter) nodes() int64 {
	if l.cfg.Nodes == nil {
		return 1
	}
	return int64(max(1, l.cfg.Nodes()))
}

func (l *Limiter) key(id string) *keyState {
	ks := l.keys[id]
	if ks == nil {
		ks = &keyState{minute: newRing(60, time.Second), recent: newRing(10, l.cfg.ShareWindow/10)}
		l.keys[id] = ks
	}
	return ks
}

// dayOf and monthOf number UTC days and months.
func dayOf(t time.Time) int64 { return t.Unix() / 86400 }

func monthOf(t time.Time) int64 {
	u := t.UTC()
	return int64(u.Year())*12 + int64(u.Month()) - 1
}

// Ticket is one admitted request. Settle it once with its real token
// count; further calls do nothing.
type Ticket struct {
	l       *Limiter
	key     string
	at      time.Time
	est     int64
	settled bool
	// Status is the key's standing once the request was admitted.
	Status Status
}

// Admit admits one request of key, whose prompt is estimated at est
// tokens, or refuses it with a *LimitError. A key without limits gets a
// nil Ticket and no error. The Status is the key's standing, for the
// rate-limit headers, in both cases.
func (l *Limiter) Admit(key string, lim state.Limits, est int64) (*Ticket, Status, error) {
	if lim == (state.Limits{}) {
		return nil, Status{}, nil
	}
	est = max(est, 0)
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	ks := l.key(key)
	tot := l.totals(key, ks, now)
	if err := l.check(lim, tot, now); err != nil {
		return nil, tot.status(lim, now, 0, 0), err
	}
	ks.minute.add(now, 1, est)
	ks.recent.add(now, 1, est)
	ks.inflight++
	ks.day.add(dayOf(now), est)
	ks.month.add(monthOf(now), est)
	t := &Ticket{l: l, key: key, at: now, est: est}
	t.Status = tot.status(lim, now, 1, est)
	return t, t.Status, nil
}

// Settle counts the request's real tokens (prompt and completion) in
// place of its estimate and ends it.
func (t *Ticket) Settle(tokens int64) {
	if t == nil {
		return
	}
	l := t.l
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.settled {
		return
	}
	t.settled = true
	ks := l.key(t.key)
	ks.inflight--
	diff := max(tokens, 0) - t.est
	ks.minute.adjust(t.at, now, diff)
	ks.recent.adjust(t.at, now, diff)
	ks.day.add(dayOf(now), diffFor(ks.day.n, dayOf(t.at), dayOf(now), diff, tokens))
	ks.month.add(monthOf(now), diffFor(ks.month.n, monthOf(t.at), monthOf(now), diff, tokens))
}

// diffFor is what a settlement adds to a period: the difference from the
// estimate when the period that counted it is still current, else the
// whole count.
func diffFor(cur, admitted, now, diff, tokens int64) int64 {
	if cur == admitted && admitted == now {
		return diff
	}
	return max(tokens, 0)
}

// Peek is key's standing without admitting anything (for answers that
// count no request); ok is false for a key without limits.
func (l *Limiter) Peek(key string, lim state.Limits) (st Status, ok bool) {
	if lim == (state.Limits{}) {
		return Status{}, false
	}
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	ks := l.key(key)
	return l.totals(key, ks, now).status(lim, now, 0, 0), true
}
