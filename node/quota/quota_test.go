package quota

import (
	"errors"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
)

func newTest(self string, nodes int) (*Limiter, *testwait.Clock) {
	clk := testwait.NewClock()
	clk.Advance(time.Duration(1_700_000_000) * time.Second)
	return New(Config{Self: self, Now: clk.Now, Nodes: func() int { return nodes }}), clk
}

func TestAdmitRefusesOverEachLimit(t *testing.T) {
	tests := []struct {
		name    string
		lim     state.Limits
		est     int64
		settle  int64 // real tokens of each admitted request
		open    bool  // leave the requests in flight
		admits  int
		refused string
	}{
		{"requests per minute", state.Limits{RequestsPerMinute: 5}, 1, 1, false, 5, "requests_per_minute"},
		{"tokens per minute on the real count", state.Limits{TokensPerMinute: 100}, 1, 30, false, 4, "tokens_per_minute"},
		{"concurrent", state.Limits{Concurrent: 3}, 1, 1, true, 3, "concurrent"},
		{"tokens per day", state.Limits{TokensPerDay: 50}, 10, 10, false, 5, "tokens_per_day"},
		{"tokens per month", state.Limits{TokensPerMonth: 20}, 10, 10, false, 2, "tokens_per_month"},
		{"no limits", state.Limits{}, 1, 1, false, 100, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newTest("a", 1)
			n := 0
			for ; n < 100; n++ {
				tk, _, err := l.Admit("k", tc.lim, tc.est)
				if err != nil {
					var le *LimitError
					if !errors.As(err, &le) || !errors.Is(err, ErrLimited) || le.Limit != tc.refused || le.RetryAfter <= 0 {
						t.Fatalf("refusal %v, want a *LimitError on %s", err, tc.refused)
					}
					break
				}
				if !tc.open {
					tk.Settle(tc.settle)
				}
			}
			if n != tc.admits {
				t.Fatalf("admitted %d, want %d", n, tc.admits)
			}
		})
	}
}

func TestWindowSlides(t *testing.T) {
	l, clk := newTest("a", 1)
	lim := state.Limits{RequestsPerMinute: 2}
	for range 2 {
		tk, _, err := l.Admit("k", lim, 0)
		if err != nil {
			t.Fatal(err)
		}
		tk.Settle(0)
	}
	_, st, err := l.Admit("k", lim, 0)
	if !errors.Is(err, ErrLimited) || st.RemainingRequests != 0 || st.ResetRequests <= 0 || st.ResetRequests > Window {
		t.Fatalf("third: %v %+v", err, st)
	}
	clk.Advance(st.ResetRequests)
	if _, st, err = l.Admit("k", lim, 0); err != nil || st.RemainingRequests != 1 {
		t.Fatalf("after the reset: %v %+v", err, st)
	}
}

func TestPeersCountAndShares(t *testing.T) {
	a, clk := newTest("a", 2)
	b := New(Config{Self: "b", Now: clk.Now, Nodes: func() int { return 2 }})
	lim := state.Limits{RequestsPerMinute: 10}
	// Without news of b, a spends at most half of what is left per share
	// window.
	n := admitAll(a, lim)
	if n != 5 {
		t.Fatalf("a admitted %d in one share window, want 5", n)
	}
	b.Learn(a.Report())
	if n := admitAll(b, lim); n != 3 { // ceil((10-5)/2)
		t.Fatalf("b admitted %d, want 3", n)
	}
	a.Learn(b.Report())
	clk.Advance(DefaultShareWindow)
	if n := admitAll(a, lim); n != 1 { // ceil((10-8)/2)
		t.Fatalf("a admitted %d after b's report, want 1", n)
	}
}

func admitAll(l *Limiter, lim state.Limits) int {
	n := 0
	for {
		tk, _, err := l.Admit("k", lim, 0)
		if err != nil {
			return n
		}
		tk.Settle(0)
		n++
	}
}

// TestOvershootAcrossThreeNodes hammers a 60 requests/minute key from
// three limiters that exchange reports every 100 ms, each with a report
// as old as the exchange allows, and counts what the cluster admitted in
// the minute.
func TestOvershootAcrossThreeNodes(t *testing.T) {
	for _, lag := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 900 * time.Millisecond} {
		t.Run(lag.String(), func(t *testing.T) {
			total := hammer(3, 60, lag)
			t.Logf("report lag %s: admitted %d of 60 (overshoot %d)", lag, total, total-60)
			if total < 60 || total > 60+2 {
				t.Fatalf("admitted %d, want 60..62", total)
			}
		})
	}
}

// hammer runs nodes limiters for one minute in 10 ms steps; each node
// tries one request per step, and sees its peers' reports lag late.
func hammer(nodes int, limit int64, lag time.Duration) int {
	clk := testwait.NewClock()
	clk.Advance(time.Duration(1_700_000_000) * time.Second)
	ls := make([]*Limiter, nodes)
	for i := range ls {
		ls[i] = New(Config{Self: string(rune('a' + i)), Now: clk.Now, Nodes: func() int { return nodes }})
	}
	type sent struct {
		at time.Time
		r  Report
	}
	var inTransit []sent
	lim := state.Limits{RequestsPerMinute: limit}
	total := 0
	step := 10 * time.Millisecond
	for s := time.Duration(0); s < Window-time.Second; s += step {
		if s%(100*time.Millisecond) == 0 {
			for _, l := range ls {
				inTransit = append(inTransit, sent{clk.Now(), l.Report()})
			}
		}
		for len(inTransit) > 0 && clk.Now().Sub(inTransit[0].at) >= lag {
			for _, l := range ls {
				l.Learn(inTransit[0].r)
			}
			inTransit = inTransit[1:]
		}
		for _, l := range ls {
			if tk, _, err := l.Admit("k", lim, 0); err == nil {
				tk.Settle(0)
				total++
			}
		}
		clk.Advance(step)
	}
	return total
}

// TestOvershootPastTheShareWindow shows the bound's premise: reports
// older than the share window let the nodes overshoot.
func TestOvershootPastTheShareWindow(t *testing.T) {
	total := hammer(3, 60, 3*time.Second)
	t.Logf("report lag 3s: admitted %d of 60 (overshoot %d)", total, total-60)
	if total > 3*60 {
		t.Fatalf("admitted %d", total)
	}
}
