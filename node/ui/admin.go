package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sovra/sovra/client"
)

// The dashboard reads and changes the cluster through the node's own
// admin API, called in process with the signed-in operator's credential:
// the same handlers, authentication, audit records and idempotency as
// /admin/v1 over the network, without a socket. The typed client of
// package client makes the calls; bridge carries them to the handler.

// adminTimeout is the deadline of each admin call the dashboard makes.
const adminTimeout = 10 * time.Second

// maxAdminAnswer bounds the answer of one admin call.
const maxAdminAnswer = 64 << 20

// origin is what a dashboard request tells the admin calls it makes: the
// browser's address (the audit log's source) and the Host it asked for
// (a node listening on loopback answers only loopback hosts).
type origin struct {
	remote net.Addr
	host   string
}

type originKey struct{}

func withOrigin(ctx context.Context, o origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// bridge is an http.RoundTripper that serves each request with a fasthttp
// handler in process.
type bridge struct {
	h fasthttp.RequestHandler
}

// RoundTrip implements http.RoundTripper.
func (b bridge) RoundTrip(r *http.Request) (*http.Response, error) {
	o, _ := r.Context().Value(originKey{}).(origin)
	if o.remote == nil {
		o.remote = &net.TCPAddr{IP: net.IPv6loopback}
	}
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	var ctx fasthttp.RequestCtx
	ctx.Init2(&memConn{remote: o.remote}, quietLogger{}, false)
	req := &ctx.Request
	req.Header.SetMethod(r.Method)
	req.SetRequestURI(r.URL.RequestURI())
	host := o.host
	if host == "" {
		host = r.URL.Host
	}
	req.Header.SetHost(host)
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if body != nil {
		req.SetBody(body)
	}
	b.h(&ctx)
	return response(r, &ctx.Response)
}

// response turns a fasthttp response into a net/http one.
func response(r *http.Request, fr *fasthttp.Response) (*http.Response, error) {
	body := fr.Body()
	if len(body) > maxAdminAnswer {
		return nil, fmt.Errorf("ui: admin answer of %d bytes is too large", len(body))
	}
	resp := &http.Response{
		Status:     fmt.Sprintf("%d %s", fr.StatusCode(), http.StatusText(fr.StatusCode())),
		StatusCode: fr.StatusCode(), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(bytes.Clone(body))),
		ContentLength: int64(len(body)), Request: r,
	}
	fr.Header.VisitAll(func(k, v []byte) { resp.Header.Add(string(k), string(v)) })
	return resp, nil
}

// memConn stands for the connection of an in-process request: it has
// addresses and accepts deadlines, and carries no bytes.
type memConn struct {
	remote net.Addr
}

var errMemConn = errors.New("ui: in-process request has no connection to read or write")

func (c *memConn) Read([]byte) (int, error)         { return 0, errMemConn }
func (c *memConn) Write([]byte) (int, error)        { return 0, errMemConn }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv6loopback} }
func (c *memConn) RemoteAddr() net.Addr             { return c.remote }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// quietLogger drops fasthttp's diagnostics of in-process requests.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// adminBase is the base URL the client is given; the bridge ignores its
// host and uses the browser's.
const adminBase = "http://sovra.invalid"

// adminClient is a client of the node's admin API with credential.
func (u *UI) adminClient(credential string) *client.Client {
	return client.New(adminBase, client.WithToken(credential), client.WithTimeout(adminTimeout),
		client.WithHTTPClient(&http.Client{Transport: u.bridge, CheckRedirect: noRedirect}))
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
