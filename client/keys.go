package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// CreateKey makes an API key; the answer holds its secret, shown once.
func (c *Client) CreateKey(ctx context.Context, req KeyRequest) (*Key, error) {
	var k Key
	return &k, c.do(ctx, call{method: http.MethodPost, path: "/keys", body: req, idempotent: true}, &k)
}

// Keys lists the API keys.
func (c *Client) Keys(ctx context.Context) ([]Key, error) {
	var out struct {
		Keys []Key `json:"keys"`
	}
	err := c.do(ctx, call{method: http.MethodGet, path: "/keys"}, &out)
	return out.Keys, err
}

// Key returns one API key.
func (c *Client) Key(ctx context.Context, id string) (*Key, error) {
	var k Key
	return &k, c.do(ctx, call{method: http.MethodGet, path: "/keys/" + url.PathEscape(id)}, &k)
}

// UpdateKey changes the fields of a key that req sets.
func (c *Client) UpdateKey(ctx context.Context, id string, req KeyRequest) (*Key, error) {
	var k Key
	return &k, c.do(ctx, call{method: http.MethodPatch, path: "/keys/" + url.PathEscape(id), body: req, idempotent: true}, &k)
}

// RotateKey gives a key a new secret; the old one stays valid for grace
// (0: the server's default of an hour; negative: not at all).
func (c *Client) RotateKey(ctx context.Context, id string, grace time.Duration) (*Key, error) {
	k := call{method: http.MethodPost, path: "/keys/" + url.PathEscape(id) + "/rotate", idempotent: true}
	switch {
	case grace < 0:
		k.body = map[string]string{"grace": "0s"}
	case grace > 0:
		k.body = map[string]string{"grace": grace.String()}
	}
	var key Key
	return &key, c.do(ctx, k, &key)
}

// DeleteKey revokes a key.
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	return c.do(ctx, call{method: http.MethodDelete, path: "/keys/" + url.PathEscape(id), idempotent: true}, new(struct {
		Revoked string `json:"revoked"`
	}))
}

// AuditQuery filters the audit log; zero fields do not filter.
type AuditQuery struct {
	Since  time.Time
	After  uint64 // sequence number: entries after it
	Actor  string
	Action string
	Limit  int // page size; 0: the server's (100)
}

// Audit returns a page of the audit log.
func (c *Client) Audit(ctx context.Context, q AuditQuery) (*AuditPage, error) {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", strconv.FormatInt(q.Since.UnixMilli(), 10))
	}
	if q.After > 0 {
		v.Set("after", strconv.FormatUint(q.After, 10))
	}
	setNonEmpty(v, "actor", q.Actor)
	setNonEmpty(v, "action", q.Action)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var p AuditPage
	return &p, c.do(ctx, call{method: http.MethodGet, path: "/audit", query: v}, &p)
}

// VerifyAudit checks the audit log's hash chain.
func (c *Client) VerifyAudit(ctx context.Context) (*AuditVerification, error) {
	var v AuditVerification
	return &v, c.do(ctx, call{method: http.MethodGet, path: "/audit/verify"}, &v)
}

// UsageQuery selects usage: the window [Since, Until) (zero: open) and
// the grouping (key, model, node; nil: all three).
type UsageQuery struct {
	Since, Until time.Time
	GroupBy      []string
}

func (q UsageQuery) values(format string) url.Values {
	v := url.Values{"format": {format}}
	if !q.Since.IsZero() {
		v.Set("since", strconv.FormatInt(q.Since.Unix(), 10))
	}
	if !q.Until.IsZero() {
		v.Set("until", strconv.FormatInt(q.Until.Unix(), 10))
	}
	if q.GroupBy != nil {
		v.Set("group_by", strings.Join(q.GroupBy, ","))
	}
	return v
}

// Usage returns the usage of the window, grouped.
func (c *Client) Usage(ctx context.Context, q UsageQuery) (*UsageReport, error) {
	var r UsageReport
	return &r, c.do(ctx, call{method: http.MethodGet, path: "/usage", query: q.values("json")}, &r)
}

// UsageCSV returns the usage of the window as CSV.
func (c *Client) UsageCSV(ctx context.Context, q UsageQuery) ([]byte, error) {
	return c.send(ctx, call{method: http.MethodGet, path: "/usage", query: q.values("csv"), accept: "text/csv"})
}

func setNonEmpty(v url.Values, k, s string) {
	if s != "" {
		v.Set(k, s)
	}
}
