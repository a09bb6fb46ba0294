package router

import (
	"sync"
	"time"
)

// inflight keeps, by key, the start times of the requests in progress and
// when the last one ended: how long a replica's running request has run,
// and so how soon its slot frees, where this node sees every request.
type inflight[K comparable] struct {
	mu   sync.Mutex
	next uint64
	at   map[K]map[uint64]time.Time
	last map[K]time.Time
}

// begin notes a request of key k started at t; end notes its end.
func (f *inflight[K]) begin(k K, t time.Time) (end func()) {
	f.mu.Lock()
	if f.at == nil {
		f.at, f.last = map[K]map[uint64]time.Time{}, map[K]time.Time{}
	}
	if f.at[k] == nil {
		f.at[k] = map[uint64]time.Time{}
	}
	f.next++
	id := f.next
	f.at[k][id] = t
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.at[k], id)
		if len(f.at[k]) == 0 {
			delete(f.at, k)
		}
		f.last[k] = time.Now()
	}
}

// oldest is the earliest start of k's requests in progress and when the
// last of k's requests ended (zero when none).
func (f *inflight[K]) oldest(k K) (start, lastEnd time.Time, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.at[k] {
		if !ok || t.Before(start) {
			start, ok = t, true
		}
	}
	return start, f.last[k], ok
}
