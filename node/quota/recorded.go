package quota

import (
	"sync"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

// RecordedTokens sums the usage records of a state by key for the current
// UTC day and month, for Config.Recorded. It scans the records at most
// once every Every, so admitting a request never walks the whole usage.
type RecordedTokens struct {
	// Read runs fn over the replicated state.
	Read  func(fn func(*state.State))
	Every time.Duration

	mu         sync.Mutex
	at         time.Time
	dayN, monN int64
	day, month map[string]int64
}

// Tokens is the key's recorded tokens in the day and month of now.
func (r *RecordedTokens) Tokens(key string, now time.Time) (day, month int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.day == nil || now.Sub(r.at) >= r.Every || dayOf(now) != r.dayN || monthOf(now) != r.monN {
		r.scan(now)
	}
	return r.day[key], r.month[key]
}

func (r *RecordedTokens) scan(now time.Time) {
	r.at, r.dayN, r.monN = now, dayOf(now), monthOf(now)
	r.day, r.month = map[string]int64{}, map[string]int64{}
	r.Read(func(s *state.State) {
		for _, u := range s.Usage {
			start := time.Unix(u.Start, 0)
			tokens := u.PromptTokens + u.CompletionTokens
			if monthOf(start) == r.monN {
				r.month[u.Key] += tokens
				if dayOf(start) == r.dayN {
					r.day[u.Key] += tokens
				}
			}
		}
	})
}
