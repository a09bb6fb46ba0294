package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/quota"
)

// Rate-limit headers, as OpenAI sends them and its SDKs read them.
const (
	HeaderLimitRequests     = "x-ratelimit-limit-requests"
	HeaderRemainingRequests = "x-ratelimit-remaining-requests"
	HeaderResetRequests     = "x-ratelimit-reset-requests"
	HeaderLimitTokens       = "x-ratelimit-limit-tokens"
	HeaderRemainingTokens   = "x-ratelimit-remaining-tokens"
	HeaderResetTokens       = "x-ratelimit-reset-tokens"
)

// bytesPerToken turns a request body's size into the prompt's estimated
// tokens; the real count settles the estimate.
const bytesPerToken = 4

// admitQuota admits an inference request (a POST) against its key's
// limits, cluster-wide (quota.Limiter), on the node the client reached: a
// forwarded request was admitted there. The key's standing is kept for
// the headers.
func (s *Server) admitQuota(c *fiber.Ctx, ri *reqInfo) error {
	if s.cfg.Quota == nil || ri.forwarded || ri.quotaStatus != nil {
		return nil
	}
	p, ok := auth.FromCtx(c)
	if !ok {
		return nil
	}
	if c.Method() != fiber.MethodPost { // listings count no request
		if st, ok := s.cfg.Quota.Peek(p.KeyID, p.Limits); ok {
			ri.quotaStatus = &st
		}
		return nil
	}
	t, st, err := s.cfg.Quota.Admit(p.KeyID, p.Limits, int64(len(c.Body())/bytesPerToken))
	if err == nil && t == nil {
		return nil // no limits
	}
	ri.quotaStatus, ri.quota = &st, t
	return err
}

// settleQuota counts the tokens the backend reported for the request in
// place of its estimate.
func (ri *reqInfo) settleQuota() {
	ri.quota.Settle(int64(ri.promptTokens + ri.completionTokens))
}

// setQuotaHeaders puts a limited key's standing on the answer.
func setQuotaHeaders(c *fiber.Ctx, ri *reqInfo) {
	st := ri.quotaStatus
	if st == nil {
		return
	}
	if st.LimitRequests > 0 {
		c.Set(HeaderLimitRequests, strconv.FormatInt(st.LimitRequests, 10))
		c.Set(HeaderRemainingRequests, strconv.FormatInt(st.RemainingRequests, 10))
		c.Set(HeaderResetRequests, resetString(st.ResetRequests))
	}
	if st.LimitTokens > 0 {
		c.Set(HeaderLimitTokens, strconv.FormatInt(st.LimitTokens, 10))
		c.Set(HeaderRemainingTokens, strconv.FormatInt(st.RemainingTokens, 10))
		c.Set(HeaderResetTokens, resetString(st.ResetTokens))
	}
}

// resetString writes a reset the way OpenAI does ("1s", "6m0s", "20ms").
func resetString(d time.Duration) string {
	if d >= time.Second {
		d = d.Round(time.Second)
	}
	return d.Round(time.Millisecond).String()
}

// quotaError is the answer to a request over its key's limit: 429 with
// Retry-After.
func quotaError(err error) *Error {
	var le *quota.LimitError
	if !errors.As(err, &le) {
		return nil
	}
	return &Error{Status: http.StatusTooManyRequests, Type: typeRateLimit, Code: "rate_limit_exceeded",
		Message: le.Error(), RetryAfter: retrySeconds(le.RetryAfter)}
}
