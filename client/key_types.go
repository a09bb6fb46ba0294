package client

// This file holds the wire types of the key, audit and usage routes.

// Key roles.
const (
	RoleAdmin     = "admin"
	RoleInference = "inference"
)

// Limits are a key's quotas; zero is no limit.
type Limits struct {
	RequestsPerMinute int64 `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int64 `json:"tokens_per_minute,omitempty"`
	Concurrent        int64 `json:"concurrent,omitempty"`
	TokensPerDay      int64 `json:"tokens_per_day,omitempty"`
	TokensPerMonth    int64 `json:"tokens_per_month,omitempty"`
}

// Key is an API key as the admin API shows it: never its hash. Secret is
// set only in the answers that make one (create, rotate).
type Key struct {
	ID            string            `json:"id"`
	Name          string            `json:"name,omitempty"`
	Role          string            `json:"role"`
	Prefix        string            `json:"prefix,omitempty"`
	Models        []string          `json:"models"`
	Jurisdictions []string          `json:"jurisdictions"`
	Limits        Limits            `json:"limits"`
	Labels        map[string]string `json:"labels"`
	Expires       int64             `json:"expires,omitempty"`
	Created       int64             `json:"created"`
	Modified      int64             `json:"modified,omitempty"`
	LastUsed      int64             `json:"last_used,omitempty"`
	Rotated       int64             `json:"rotated,omitempty"`
	// PrevPrefix and PrevExpires show a rotated-out secret still valid.
	PrevPrefix  string `json:"prev_prefix,omitempty"`
	PrevExpires int64  `json:"prev_expires,omitempty"`
	Secret      string `json:"secret,omitempty"`
}

// KeyRequest is the body of a key's creation or update: nil fields are
// left as they are (at creation: role inference, no restriction).
type KeyRequest struct {
	Name          *string   `json:"name,omitempty"`
	Role          *string   `json:"role,omitempty"`
	Models        *[]string `json:"models,omitempty"`
	Jurisdictions *[]string `json:"jurisdictions,omitempty"`
	// ExpiresIn is a duration ("720h", "30d"); "0s" never expires.
	ExpiresIn string             `json:"expires_in,omitempty"`
	Limits    *Limits            `json:"limits,omitempty"`
	Labels    *map[string]string `json:"labels,omitempty"`
}

// AuditEntry is one record of the audit log.
type AuditEntry struct {
	Seq     uint64 `json:"seq"`
	Index   uint64 `json:"index"`
	Time    int64  `json:"time"`
	Actor   string `json:"actor"`
	Action  string `json:"action"`
	Target  string `json:"target,omitempty"`
	Source  string `json:"source,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Detail  string `json:"detail,omitempty"`
	Prev    string `json:"prev"`
	Hash    string `json:"hash,omitempty"`
}

// AuditPage is one page of the audit log; NextAfter, when not 0, is the
// After of the next page.
type AuditPage struct {
	Entries   []AuditEntry `json:"entries"`
	NextAfter uint64       `json:"next_after,omitempty"`
}

// AuditLink is a sequence number and hash of the audit chain.
type AuditLink struct {
	Seq  uint64 `json:"seq,omitempty"`
	Hash string `json:"hash,omitempty"`
}

// AuditBreak is the first broken link of the audit chain.
type AuditBreak struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// AuditVerification is GET /admin/v1/audit/verify: OK when the chain from
// the anchor (the trimmed prefix) through the head is whole.
type AuditVerification struct {
	OK      bool        `json:"ok"`
	Entries int         `json:"entries"`
	Anchor  AuditLink   `json:"anchor"`
	Head    *AuditLink  `json:"head"`
	Broken  *AuditBreak `json:"broken"`
}

// UsageRow is the sums of one group of usage.
type UsageRow struct {
	Key              string  `json:"key,omitempty"`
	Model            string  `json:"model,omitempty"`
	Node             string  `json:"node,omitempty"`
	Requests         int64   `json:"requests"`
	Errors           int64   `json:"errors"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	TTFTMsAvg        float64 `json:"ttft_ms_avg"`
	// EnergyJoules is the energy the serving nodes' GPUs spent on the
	// group's output tokens, JoulesPer1kTokens that per 1,000 of them;
	// both absent (0) where nothing was measured. EnergyEstimated is set
	// when some of the energy was estimated from the GPUs' rated power
	// and utilisation rather than measured.
	EnergyJoules      float64 `json:"energy_joules,omitempty"`
	EnergyEstimated   bool    `json:"energy_estimated,omitempty"`
	JoulesPer1kTokens float64 `json:"joules_per_1k_tokens,omitempty"`
}

// UsageReport is GET /admin/v1/usage: the rows of the window [Since,
// Until) in Unix seconds (0: open).
type UsageReport struct {
	Since int64      `json:"since"`
	Until int64      `json:"until"`
	Rows  []UsageRow `json:"rows"`
}
