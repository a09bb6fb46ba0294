package quota

import (
	"errors"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
)

// TestRecordedUsageHoldsBudgetsAcrossRestarts: a node that starts afresh
// (its own day and month counts empty) still refuses a key whose budget
// the replicated usage records have spent.
func TestRecordedUsageHoldsBudgetsAcrossRestarts(t *testing.T) {
	now := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	clk := testwait.NewClock()
	clk.Advance(now.Sub(clk.Now()))
	st := state.New()
	bucket := func(key string, start time.Time, tokens int64) {
		u := &state.UsageTotal{Start: start.Unix(), Hours: 1, Key: key, Model: "m", Node: "n1", Requests: 1, PromptTokens: tokens / 2, CompletionTokens: tokens - tokens/2}
		st.Usage[state.UsageKey(u)] = u
	}
	bucket("k", now.Add(-2*time.Hour), 900)                       // today
	bucket("k", now.Add(-30*time.Hour), 5000)                     // yesterday, this month
	bucket("k", time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), 7) // last month
	bucket("other", now.Add(-time.Hour), 10000)
	rec := &RecordedTokens{Read: func(fn func(*state.State)) { fn(st) }, Every: time.Second}
	if d, m := rec.Tokens("k", now); d != 900 || m != 5900 {
		t.Fatalf("recorded day %d, month %d; want 900, 5900", d, m)
	}
	cases := []struct {
		name string
		lim  state.Limits
		est  int64
		want string // the limit refused, or "" for admitted
	}{
		{"day budget with room", state.Limits{TokensPerDay: 1000}, 50, ""},
		{"day budget spent", state.Limits{TokensPerDay: 900}, 1, "tokens_per_day"},
		{"month budget spent", state.Limits{TokensPerMonth: 5900}, 1, "tokens_per_month"},
		{"month budget with room", state.Limits{TokensPerMonth: 6000}, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Config{Self: "n2", Now: clk.Now, Recorded: rec.Tokens})
			_, _, err := l.Admit("k", tc.lim, tc.est)
			var le *LimitError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!errors.As(err, &le) || le.Limit != tc.want):
				t.Fatalf("error %v, want a %s refusal", err, tc.want)
			}
		})
	}
}
