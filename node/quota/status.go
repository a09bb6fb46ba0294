package quota

import (
	"time"

	"github.com/sovra/sovra/cluster/state"
)

// Status is a key's standing against its request and token limits, for
// the x-ratelimit-* headers OpenAI clients read. A limit of 0 is unset.
type Status struct {
	LimitRequests, RemainingRequests int64
	ResetRequests                    time.Duration
	LimitTokens, RemainingTokens     int64
	ResetTokens                      time.Duration
}

// status is the standing after adding req requests and tok tokens to t:
// tokens against the per-minute limit, else the day's, else the month's.
func (t totals) status(lim state.Limits, now time.Time, req, tok int64) Status {
	var s Status
	reset := t.untilReset(now)
	if req > 0 && t.Requests == 0 {
		reset = Window
	}
	if lim.RequestsPerMinute > 0 {
		s.LimitRequests = lim.RequestsPerMinute
		s.RemainingRequests = max(0, lim.RequestsPerMinute-t.Requests-req)
		s.ResetRequests = reset
	}
	switch {
	case lim.TokensPerMinute > 0:
		s.LimitTokens, s.RemainingTokens, s.ResetTokens = lim.TokensPerMinute, lim.TokensPerMinute-t.Tokens-tok, reset
	case lim.TokensPerDay > 0:
		s.LimitTokens, s.RemainingTokens, s.ResetTokens = lim.TokensPerDay, lim.TokensPerDay-t.Day-tok, nextDay(now).Sub(now)
	case lim.TokensPerMonth > 0:
		s.LimitTokens, s.RemainingTokens, s.ResetTokens = lim.TokensPerMonth, lim.TokensPerMonth-t.Month-tok, nextMonth(now).Sub(now)
	}
	s.RemainingTokens = max(0, s.RemainingTokens)
	return s
}
