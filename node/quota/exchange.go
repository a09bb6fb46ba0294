package quota

import (
	"time"

	"github.com/sovra/sovra/cluster/state"
)

// Usage is what one node admitted for one key, as it reports it to peers.
type Usage struct {
	// Requests and Tokens are in the last Window; Reset (Unix ms) is
	// when the oldest of them leaves it.
	Requests int64 `json:"r,omitempty"`
	Tokens   int64 `json:"t,omitempty"`
	Reset    int64 `json:"z,omitempty"`
	// Concurrent are the requests in flight.
	Concurrent int64 `json:"c,omitempty"`
	// Day and Month are the tokens of the UTC day DayN and month MonthN.
	Day    int64 `json:"d,omitempty"`
	DayN   int64 `json:"dn,omitempty"`
	Month  int64 `json:"m,omitempty"`
	MonthN int64 `json:"mn,omitempty"`
}

// Report is one node's usage by key, sent in the load exchange.
type Report struct {
	Node string           `json:"node"`
	Keys map[string]Usage `json:"keys,omitempty"`
}

// usage is what this node admitted for a key; ok is false when that is
// nothing worth reporting.
func (ks *keyState) usage(now time.Time) (u Usage, ok bool) {
	var reset time.Time
	u.Requests, u.Tokens, reset = ks.minute.sum(now)
	if !reset.IsZero() {
		u.Reset = reset.UnixMilli()
	}
	u.Concurrent = ks.inflight
	if ks.day.n == dayOf(now) {
		u.Day, u.DayN = ks.day.tokens, ks.day.n
	}
	if ks.month.n == monthOf(now) {
		u.Month, u.MonthN = ks.month.tokens, ks.month.n
	}
	return u, u != Usage{}
}

// Report is this node's usage by key. Keys that used nothing this month
// are forgotten.
func (l *Limiter) Report() Report {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Report{Node: l.cfg.Self, Keys: make(map[string]Usage, len(l.keys))}
	for id, ks := range l.keys {
		u, ok := ks.usage(now)
		if !ok {
			delete(l.keys, id)
			continue
		}
		r.Keys[id] = u
	}
	return r
}

// Learn takes in a peer's report (the last one replaces the one before).
func (l *Limiter) Learn(r Report) {
	if r.Node == "" || r.Node == l.cfg.Self {
		return
	}
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.peers[r.Node] = peerReport{keys: r.Keys, recv: now}
}

// Forget drops the reports of every peer not in keep.
func (l *Limiter) Forget(keep []string) {
	set := make(map[string]bool, len(keep))
	for _, k := range keep {
		set[k] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for n := range l.peers {
		if !set[n] {
			delete(l.peers, n)
		}
	}
}

// totals is a key's cluster-wide usage as this node knows it, with this
// node's own spending in the last ShareWindow.
type totals struct {
	Usage
	reset                time.Time
	recentReq, recentTok int64
}

// totals sums this node's usage of key and its peers' last reports: the
// per-minute counts of reports younger than Window, the in-flight counts
// of those younger than ConcurrentTTL, the day and month of the current
// ones. l.mu is held.
func (l *Limiter) totals(key string, ks *keyState, now time.Time) totals {
	var t totals
	own, _ := ks.usage(now)
	t.Usage = own
	t.reset = fromMs(own.Reset)
	t.recentReq, t.recentTok, _ = ks.recent.sum(now)
	day, month := dayOf(now), monthOf(now)
	for _, p := range l.peers {
		u, ok := p.keys[key]
		age := now.Sub(p.recv)
		if !ok || age >= Window {
			continue
		}
		t.Requests += u.Requests
		t.Tokens += u.Tokens
		if r := fromMs(u.Reset); !r.IsZero() && (t.reset.IsZero() || r.Before(t.reset)) {
			t.reset = r
		}
		if age < l.cfg.ConcurrentTTL {
			t.Concurrent += u.Concurrent
		}
		if u.DayN == day {
			t.Day += u.Day
		}
		if u.MonthN == month {
			t.Month += u.Month
		}
	}
	if l.cfg.Recorded != nil {
		d, m := l.cfg.Recorded(key, now)
		t.Day, t.Month = max(t.Day, d), max(t.Month, m)
	}
	return t
}

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// check refuses a request that a limit does not leave room for: the key
// is at a limit cluster-wide, or this node spent its share of what was
// left within the last ShareWindow (not for the concurrent limit, whose
// requests end by themselves). l.mu is held.
func (l *Limiter) check(lim state.Limits, t totals, now time.Time) error {
	n := l.nodes()
	checks := []struct {
		name                string
		limit, used, recent int64
		retry               time.Duration
	}{
		{"concurrent", lim.Concurrent, t.Concurrent, -1, time.Second},
		{"requests_per_minute", lim.RequestsPerMinute, t.Requests, t.recentReq, t.untilReset(now)},
		{"tokens_per_minute", lim.TokensPerMinute, t.Tokens, t.recentTok, t.untilReset(now)},
		{"tokens_per_day", lim.TokensPerDay, t.Day, t.recentTok, nextDay(now).Sub(now)},
		{"tokens_per_month", lim.TokensPerMonth, t.Month, t.recentTok, nextMonth(now).Sub(now)},
	}
	for _, c := range checks {
		if c.limit <= 0 {
			continue
		}
		if c.used >= c.limit {
			return &LimitError{Limit: c.name, Value: c.limit, RetryAfter: c.retry}
		}
		if c.recent >= 0 && !withinShare(c.limit, c.used, c.recent, n) {
			return &LimitError{Limit: c.name, Value: c.limit, RetryAfter: l.cfg.ShareWindow}
		}
	}
	return nil
}

// withinShare says whether a node that spent recent of used in the last
// ShareWindow may spend more: recent is below its share, ceil(1/n), of
// what was left before it.
func withinShare(limit, used, recent, n int64) bool {
	left := limit - used + recent
	return recent < (left+n-1)/n
}

func (t totals) untilReset(now time.Time) time.Duration {
	if t.reset.IsZero() || !t.reset.After(now) {
		return time.Second
	}
	return t.reset.Sub(now)
}

func nextDay(now time.Time) time.Time {
	return time.Unix((dayOf(now)+1)*86400, 0)
}

func nextMonth(now time.Time) time.Time {
	u := now.UTC()
	return time.Date(u.Year(), u.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}
