// Package testauth holds the credential that test nodes run with and an
// HTTP client that sends it, for the tests of every package (it imports
// nothing of sovra, so node/api's own tests may use it too).
package testauth

import (
	"net/http"
	"time"
)

// Token is the management token of the nodes tests start.
const Token = "sovra-test-admin-token"

// Transport adds "Authorization: Bearer <Token>" to requests that carry no
// Authorization header of their own, over Base (http.DefaultTransport
// when nil).
type Transport struct {
	Base  http.RoundTripper
	Token string // Token when empty
}

// RoundTrip implements http.RoundTripper.
func (t Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if r.Header.Get("Authorization") != "" {
		return base.RoundTrip(r)
	}
	tok := t.Token
	if tok == "" {
		tok = Token
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return base.RoundTrip(r)
}

// CloseIdleConnections closes Base's idle connections.
func (t Transport) CloseIdleConnections() {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if c, ok := base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Client is an HTTP client that sends Token; it shares
// http.DefaultTransport's connections, so closing the default client's
// idle connections closes its own.
var Client = &http.Client{Transport: Transport{}}

// NewClient is a client that sends Token over base, with a timeout (0:
// none).
func NewClient(base http.RoundTripper, timeout time.Duration) *http.Client {
	return &http.Client{Transport: Transport{Base: base}, Timeout: timeout}
}
