package balance

import (
	"testing"
	"time"
)

func TestConversationsStayWithinTheirShareOfCapacity(t *testing.T) {
	now := time.Unix(0, 0)
	b := New(Config{Rand: seeded(), Now: func() time.Time { return now }})
	fast := model(4, 35, 200, 24) // 4 slots at 2x speed: 8 units
	slow := model(2, 70, 100, 24) // 2 units each
	cands := []Candidate{cand("fast", fast, 0, 0), cand("s1", slow, 0, 0), cand("s2", slow, 0, 0)}
	got := map[string]int{}
	const n = 400
	for i := range n {
		now = now.Add(25 * time.Millisecond)
		req := Request{Model: "m", Prefix: []uint64{1, uint64(i) + 2}} // system prompt + a new first turn
		j, _ := b.Pick(req, cands)
		b.Served(req, cands[j].Node)
		got[cands[j].Node]++
	}
	// Idle, the fast node always finishes first; its share of capacity is
	// 8/12, so it may take at most 1.25 x 2/3 of the conversations.
	if share := float64(got["fast"]) / n; share > 1.25*8/12+0.03 || share < 0.6 {
		t.Fatalf("fast node took %.2f of the conversations (%v), want about 0.83 at most", share, got)
	}
	// Single prompts are not bounded: they go where they finish first.
	single := map[string]int{}
	for range 100 {
		j, _ := b.Pick(Request{Model: "m", Prefix: []uint64{7}}, cands)
		single[cands[j].Node]++
	}
	if single["fast"] != 100 {
		t.Fatalf("single prompts went %v, want all to the fast node", single)
	}
}

func TestShareMeterForgets(t *testing.T) {
	now := time.Unix(0, 0)
	s := newShares(func() time.Time { return now })
	for range 50 {
		s.add("a")
	}
	cands := []Candidate{{Node: "a"}, {Node: "b"}}
	if over := s.over(cands, []float64{1, 1}, 1.25); !over[0] || over[1] {
		t.Fatalf("after 50 requests to a: over %v, want a over and b not", over)
	}
	now = now.Add(10 * shareWindow)
	if over := s.over(cands, []float64{1, 1}, 1.25); over[0] {
		t.Fatal("the meter does not forget")
	}
}
