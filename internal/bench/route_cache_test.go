package bench

import (
	"slices"
	"testing"
)

func TestPrefixCaches(t *testing.T) {
	sys, q1, a1, q2 := "system\x00be brief", "user\x00first", "assistant\x00ok", "user\x00second"
	first := NewPrompt([]string{sys, q1}, []int{100, 10})
	follow := NewPrompt([]string{sys, q1, a1, q2}, []int{100, 10, 5, 12})
	other := NewPrompt([]string{sys, q2}, []int{100, 12})
	if !slices.Equal(follow.Tokens, []int{100, 110, 115, 127}) || follow.Total() != 127 || first.Hashes[1] != follow.Hashes[1] {
		t.Fatalf("prompt %+v", follow)
	}
	c := NewPrefixCaches(2)
	if got := c.Cached(0, follow); got != 0 {
		t.Fatalf("an empty cache holds %d tokens", got)
	}
	c.Remember(0, NewPrompt([]string{sys, q1, a1}, []int{100, 10, 5})) // the first turn and its answer
	for _, tc := range []struct {
		server int
		p      Prompt
		want   int
	}{
		{0, follow, 115}, // the whole history
		{0, other, 100},  // the system prompt
		{1, follow, 0},   // another server
		{0, first, 109},  // all of it cached: one token is still evaluated
	} {
		if got := c.Cached(tc.server, tc.p); got != tc.want {
			t.Errorf("server %d: %d tokens cached of %v, want %d", tc.server, got, tc.p.Tokens, tc.want)
		}
	}
}
