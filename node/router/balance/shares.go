package balance

import (
	"math"
	"sync"
	"time"
)

// shares meters the conversation requests a balancer sent to each node,
// decayed over shareWindow, so that where conversations stick stays in
// proportion to capacity: a conversation's turns follow its first one, so
// an imbalance there lasts as long as the conversation does.
type shares struct {
	mu   sync.Mutex
	now  func() time.Time
	last time.Time
	n    map[string]float64
}

const (
	// shareWindow is the time constant of the decay.
	shareWindow = 10 * time.Second
	// shareWarm: the bound applies once the meter holds this many
	// requests, so a cold start is not decided by one or two of them.
	shareWarm = 10
)

func newShares(now func() time.Time) *shares {
	return &shares{now: now, n: map[string]float64{}}
}

// decay ages the counts to now; s.mu is held.
func (s *shares) decay() {
	now := s.now()
	if !s.last.IsZero() {
		f := math.Exp(-float64(now.Sub(s.last)) / float64(shareWindow))
		for k, v := range s.n {
			if v *= f; v < 1e-3 {
				delete(s.n, k)
			} else {
				s.n[k] = v
			}
		}
	}
	s.last = now
}

// add counts one request sent to node.
func (s *shares) add(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decay()
	s.n[node]++
}

// over reports, for each candidate, whether one more request would take
// it beyond factor times its share of capacity.
func (s *shares) over(cands []Candidate, capacity []float64, factor float64) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decay()
	var total, capTotal float64
	for i, c := range cands {
		total += s.n[c.Node]
		capTotal += capacity[i]
	}
	out := make([]bool, len(cands))
	if total < shareWarm {
		return out
	}
	for i, c := range cands {
		out[i] = s.n[c.Node]+1 > factor*(total+1)*capacity[i]/capTotal
	}
	return out
}
