package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxBody bounds the answers the client reads (a snapshot is the
// largest).
const maxBody = 1 << 30

// Client calls one node's admin API. It is safe for concurrent use.
type Client struct {
	base    string
	token   string
	hc      *http.Client
	timeout time.Duration
	strict  bool
}

// Option configures a Client.
type Option func(*Client)

// WithToken sets the bearer token (the management token or an admin key).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient sets the HTTP client: its transport carries the TLS
// configuration (a cluster CA, a client certificate).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTimeout sets the deadline the server gives each call (?timeout=);
// 0 leaves the server's default.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithStrictDecoding makes answers holding fields the client does not
// know an error: tests use it to catch drift between server and client.
func WithStrictDecoding() Option { return func(c *Client) { c.strict = true } }

// New returns a client of the node at baseURL ("https://host:port").
func New(baseURL string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c
}

type ctxKey int

const (
	keyIdempotency ctxKey = iota
	keyStale
)

// WithIdempotencyKey makes the mutating calls made with ctx send key as
// their Idempotency-Key, so that a retry after an indeterminate outcome
// learns the first call's result. Without it each call sends a random one.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyIdempotency, key)
}

// Stale makes the reads made with ctx answer from the node's local state
// (?stale=true) instead of a linearizable read through the leader: they
// work without a leader and may lag.
func Stale(ctx context.Context) context.Context {
	return context.WithValue(ctx, keyStale, true)
}

// call is one request.
type call struct {
	method, path string
	query        url.Values
	body         any    // JSON-encoded unless raw is set
	raw          []byte // sent as is
	idempotent   bool   // send an Idempotency-Key
	accept       string
}

// do sends the call and decodes a JSON answer into out (nil: discard).
func (c *Client) do(ctx context.Context, k call, out any) error {
	data, err := c.send(ctx, k)
	if err != nil || out == nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if c.strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("sovra: %s %s: decode answer: %w", k.method, k.path, err)
	}
	return nil
}

// send sends the call and returns the answer's body, or its *Error.
func (c *Client) send(ctx context.Context, k call) ([]byte, error) {
	req, err := c.request(ctx, k)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sovra: %s %s: %w", k.method, k.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("sovra: %s %s: read answer: %w", k.method, k.path, err)
	}
	if resp.StatusCode >= 300 {
		return nil, parseError(resp, data)
	}
	return data, nil
}

func (c *Client) request(ctx context.Context, k call) (*http.Request, error) {
	var body io.Reader
	ctype := ""
	switch {
	case k.raw != nil:
		body, ctype = bytes.NewReader(k.raw), "application/json" // the snapshot is JSON
	case k.body != nil:
		b, err := json.Marshal(k.body)
		if err != nil {
			return nil, fmt.Errorf("sovra: encode request: %w", err)
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, k.method, c.base+"/admin/v1"+k.path+c.encodeQuery(ctx, k.query), body)
	if err != nil {
		return nil, fmt.Errorf("sovra: %w", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if k.accept != "" {
		req.Header.Set("Accept", k.accept)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if k.idempotent {
		key, err := idempotencyKey(ctx)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Idempotency-Key", key)
	}
	return req, nil
}

func (c *Client) encodeQuery(ctx context.Context, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	if c.timeout > 0 {
		q.Set("timeout", c.timeout.String())
	}
	if stale, _ := ctx.Value(keyStale).(bool); stale {
		q.Set("stale", "true")
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// idempotencyKey is the caller's key, or a random one.
func idempotencyKey(ctx context.Context) (string, error) {
	if k, ok := ctx.Value(keyIdempotency).(string); ok && k != "" {
		return k, nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sovra: idempotency key: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
