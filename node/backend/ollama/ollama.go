// Package ollama adapts a local Ollama server to backend.Backend. It is the
// only package of sovra that talks to Ollama over the network, through the
// official client (github.com/ollama/ollama/api), and it fixes the client's
// gaps that matter to a proxy: every failure is mapped to a backend sentinel,
// and a stream that ends without its final "done" message is an error rather
// than a silent success.
package ollama

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/synchttp"
	"github.com/sovra/sovra/internal/version"
	"github.com/sovra/sovra/node/backend"
)

// Client is a backend.Backend over one Ollama server.
type Client struct {
	c  *api.Client
	hc *http.Client
	// rt is hc's transport when Do would add nothing to it (no timeout,
	// cookie jar or redirect policy): streams call it directly.
	rt http.RoundTripper
	// chatURL and generateURL are parsed once; header is the header of
	// every streamed call (read-only: transports clone before changing).
	chatURL, generateURL *url.URL
	header               http.Header
}

var _ backend.Backend = (*Client)(nil)

// New returns a client for the Ollama server at base (for example
// http://127.0.0.1:11434). hc may be nil for a client tuned for a proxy:
// many idle connections to the one host, short dial timeout, no overall
// timeout (generations can be long; callers bound them with ctx).
func New(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("ollama url %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("ollama url %q: want http://host:port", base)
	}
	if hc == nil {
		hc = &http.Client{Transport: NewTransport()}
	}
	root := strings.TrimSuffix(u.String(), "/")
	c := &Client{c: api.NewClient(u, hc), hc: hc, header: http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/x-ndjson"},
		"User-Agent":   {"sovra/" + version.Version},
	}}
	if c.chatURL, err = url.Parse(root + "/api/chat"); err != nil {
		return nil, fmt.Errorf("ollama url %q: %w", base, err)
	}
	if c.generateURL, err = url.Parse(root + "/api/generate"); err != nil {
		return nil, fmt.Errorf("ollama url %q: %w", base, err)
	}
	if hc.Timeout == 0 && hc.Jar == nil && hc.CheckRedirect == nil {
		c.rt = hc.Transport
	}
	return c, nil
}

// NewTransport is the HTTP transport sovra uses toward Ollama and its
// peers: many idle connections to one host, a short dial timeout, no
// overall timeout (generations can be long; callers bound them with ctx).
// It runs each exchange on the caller's goroutine (see synchttp): net/http's
// transport hands every request between three goroutines, which cost
// sovra about a third of its CPU per proxied request.
func NewTransport() *synchttp.Transport {
	return synchttp.New()
}

// Chat runs a chat request; fn sees every partial response. Ollama accepts
// thinking levels ("low", "medium", "high") only for some models and answers
// 400 for the rest; such a request is retried once with plain thinking on,
// which is the closest the model can honour.
func (c *Client) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	err := c.chat(ctx, req, fn)
	if errors.Is(err, backend.ErrBadRequest) && thinkLevel(req.Think) {
		plain := *req
		plain.Think = &api.ThinkValue{Value: true}
		if c.chat(ctx, &plain, fn) == nil {
			return nil
		}
	}
	return err
}

func (c *Client) chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	done := false
	err := c.streamNDJSON(ctx, c.chatURL, req, func(b []byte) error {
		r, err := decodeChatLine(b)
		if err != nil {
			return err
		}
		done = r.Done
		return fn(r)
	})
	return finish(ctx, err, done)
}

// Generate runs a completion request; fn sees every partial response.
// Thinking levels fall back as in Chat.
func (c *Client) Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	err := c.generate(ctx, req, fn)
	if errors.Is(err, backend.ErrBadRequest) && thinkLevel(req.Think) {
		plain := *req
		plain.Think = &api.ThinkValue{Value: true}
		if c.generate(ctx, &plain, fn) == nil {
			return nil
		}
	}
	return err
}

// thinkLevel reports whether think asks for a level rather than on/off.
func thinkLevel(t *api.ThinkValue) bool {
	if t == nil {
		return false
	}
	_, isString := t.Value.(string)
	return isString
}

func (c *Client) generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	done := false
	err := c.streamNDJSON(ctx, c.generateURL, req, func(b []byte) error {
		r, err := decodeLine[api.GenerateResponse](b)
		if err != nil {
			return err
		}
		done = r.Done
		return fn(r)
	})
	return finish(ctx, err, done)
}

// Embed computes embeddings.
func (c *Client) Embed(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error) {
	r, err := c.c.Embed(ctx, req)
	return r, mapErr(ctx, err)
}

// List lists the models on disk.
func (c *Client) List(ctx context.Context) (*api.ListResponse, error) {
	r, err := c.c.List(ctx)
	return r, mapErr(ctx, err)
}

// ListRunning lists the models loaded in memory.
func (c *Client) ListRunning(ctx context.Context) (*api.ProcessResponse, error) {
	r, err := c.c.ListRunning(ctx)
	return r, mapErr(ctx, err)
}

// Show describes one model.
func (c *Client) Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	r, err := c.c.Show(ctx, req)
	return r, mapErr(ctx, err)
}

// Pull downloads a model; fn sees the progress.
func (c *Client) Pull(ctx context.Context, req *api.PullRequest, fn func(api.ProgressResponse) error) error {
	return mapErr(ctx, c.c.Pull(ctx, req, func(p api.ProgressResponse) error { return fn(p) }))
}

// Delete removes a model from disk.
func (c *Client) Delete(ctx context.Context, req *api.DeleteRequest) error {
	return mapErr(ctx, c.c.Delete(ctx, req))
}

// Copy gives a model a second name.
func (c *Client) Copy(ctx context.Context, req *api.CopyRequest) error {
	return mapErr(ctx, c.c.Copy(ctx, req))
}

// Version returns the server's version.
func (c *Client) Version(ctx context.Context) (string, error) {
	v, err := c.c.Version(ctx)
	return v, mapErr(ctx, err)
}

// Heartbeat checks that the server answers.
func (c *Client) Heartbeat(ctx context.Context) error {
	return mapErr(ctx, c.c.Heartbeat(ctx))
}

// finish maps a streaming call's outcome: the client library returns nil when
// the connection closes early, so a stream without its final message is
// reported as truncated.
func finish(ctx context.Context, err error, done bool) error {
	if err != nil {
		return mapErr(ctx, err)
	}
	if !done {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return backend.ErrTruncated
	}
	return nil
}

// mapErr turns the client's errors into backend sentinels, keeping the
// original message.
func mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, ctxErr) || errors.Is(err, context.Canceled)) {
		return ctxErr
	}
	if isSentinel(err) {
		return err
	}
	var se api.StatusError
	if errors.As(err, &se) {
		return statusErr(se)
	}
	var ae api.AuthorizationError
	if errors.As(err, &ae) {
		return fmt.Errorf("%w: ollama asked for authorization (%d)", backend.ErrUnavailable, ae.StatusCode)
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		return fmt.Errorf("%w: %v", backend.ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %v", backend.ErrFailed, err)
}

func isSentinel(err error) bool {
	for _, s := range []error{backend.ErrModelNotFound, backend.ErrOverloaded, backend.ErrRateLimited, backend.ErrUnavailable, backend.ErrBadRequest, backend.ErrTruncated, backend.ErrFailed} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func statusErr(se api.StatusError) error {
	msg := se.ErrorMessage
	if msg == "" {
		msg = se.Status
	}
	switch {
	case se.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", backend.ErrModelNotFound, msg)
	case se.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s", backend.ErrRateLimited, msg)
	case se.StatusCode == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %s", backend.ErrOverloaded, msg)
	case se.StatusCode >= 400 && se.StatusCode < 500:
		return fmt.Errorf("%w: %s", backend.ErrBadRequest, msg)
	case se.StatusCode == http.StatusBadGateway || se.StatusCode == http.StatusGatewayTimeout:
		return fmt.Errorf("%w: %s", backend.ErrUnavailable, msg)
	default:
		return fmt.Errorf("%w: %s", backend.ErrFailed, msg)
	}
}
