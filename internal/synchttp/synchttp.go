// Package synchttp is an HTTP/1.1 client transport that runs each exchange
// on the caller's goroutine.
//
// net/http's Transport gives every connection a reader and a writer
// goroutine and hands each request and response between them and the
// caller: three goroutine hand-offs per request, each of which may wake a
// sleeping thread. On a proxy that sends most requests to one local server
// (sovra toward its Ollama) those wake-ups were a large share of the CPU
// per request. This transport writes the request and reads the response
// itself, with net/http's own codec (http.Request.Write and
// http.ReadResponse) or a lean one for the plain requests and answers
// that make most of the traffic (write.go, read.go), over keep-alive
// connections it pools per host. A
// context that ends interrupts a blocked read or write by setting the
// connection's deadline (context.AfterFunc: no goroutine until it fires),
// and such a connection is closed, never reused.
//
// It speaks HTTP/1.1 only, to http and https URLs, without proxies or
// compression; it retries a request once on a new connection when a
// reused one fails before any byte of the answer arrived (the server
// closed it while idle).
package synchttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Transport is an http.RoundTripper. The zero value works but keeps no
// idle connection; New gives the usual settings.
type Transport struct {
	// DialContext opens connections (net.Dialer's by default).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSClientConfig is used for https URLs; ServerName defaults to the
	// URL's host.
	TLSClientConfig *tls.Config
	// MaxIdleConnsPerHost bounds the idle connections kept for one host.
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes connections idle for longer.
	IdleConnTimeout time.Duration
	// DisableKeepAlives closes every connection after its exchange.
	DisableKeepAlives bool

	mu   sync.Mutex
	idle map[string][]*conn
}

// New returns a transport with net.Dialer's dial (3 s timeout, TCP
// keep-alives), 1024 idle connections per host and a 90 s idle timeout.
func New() *Transport {
	return &Transport{
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
}

// bufSize is the size of each connection's read and write buffers.
const bufSize = 16 << 10

// conn is one pooled connection.
type conn struct {
	c     net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	idled time.Time // when it went idle
}

// RoundTrip sends req and returns its answer, whose body must be read to
// its end or closed.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Host == "" {
		closeBody(req)
		return nil, errors.New("synchttp: request without a host")
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		closeBody(req)
		return nil, fmt.Errorf("synchttp: unsupported scheme %q", req.URL.Scheme)
	}
	key := req.URL.Scheme + "://" + hostPort(req.URL.Scheme, req.URL.Host)
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(req.Context(), key, req)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := t.exchange(key, pc, req)
		if err == nil {
			return resp, nil
		}
		var stale staleError
		if attempt == 0 && reused && errors.As(err, &stale) && req.Context().Err() == nil && rewind(req) {
			continue
		}
		closeBody(req)
		return nil, err
	}
}

// staleError is a failure on a reused connection before any byte of the
// answer arrived: the server most likely closed it while it was idle.
type staleError struct{ err error }

func (e staleError) Error() string { return e.err.Error() }
func (e staleError) Unwrap() error { return e.err }

// rewind makes req's body readable again for a retry.
func rewind(req *http.Request) bool {
	if req.Body == nil || req.Body == http.NoBody {
		return true
	}
	if req.GetBody == nil {
		return false
	}
	b, err := req.GetBody()
	if err != nil {
		return false
	}
	req.Body = b
	return true
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// aLongTimeAgo is a deadline that has passed: it interrupts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes req on pc and reads the answer's header.
func (t *Transport) exchange(key string, pc *conn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = pc.c.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("synchttp: %w (%v)", cerr, err)
		}
		return nil, err
	}
	werr := writeRequest(pc.bw, req)
	if werr == nil {
		werr = pc.bw.Flush()
	}
	if werr != nil && pc.br.Buffered() == 0 {
		// The server may have answered and closed before reading the
		// whole body (a refusal of a large one): its answer is worth
		// more than the write error, if it is there.
		if _, perr := pc.br.Peek(1); perr != nil {
			return fail(staleError{werr})
		}
	}
	resp, err := readResponse(pc.br, req)
	if err != nil {
		if pc.br.Buffered() == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnError(err)) {
			err = staleError{err}
		}
		return fail(err)
	}
	reusable := werr == nil && !resp.Close && !t.DisableKeepAlives && !req.Close
	if resp.Body == http.NoBody || resp.Body == nil {
		t.release(key, pc, stop, reusable)
		return resp, nil
	}
	resp.Body = &body{rc: resp.Body, t: t, key: key, pc: pc, stop: stop, reusable: reusable, ctx: ctx}
	return resp, nil
}

// isConnError says whether err came from reading or writing the
// connection (a reset, a broken pipe; a deadline set by a cancelled
// context too, which RoundTrip does not retry).
func isConnError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && (op.Op == "read" || op.Op == "write")
}

// release returns pc to the pool when it is reusable and its context's
// watch had not fired, and closes it otherwise.
func (t *Transport) release(key string, pc *conn, stop func() bool, reusable bool) {
	if !stop() || !reusable {
		_ = pc.c.Close()
		return
	}
	pc.idled = time.Now()
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	if len(t.idle[key]) < t.MaxIdleConnsPerHost {
		t.idle[key] = append(t.idle[key], pc)
		pc = nil
	}
	t.mu.Unlock()
	if pc != nil {
		_ = pc.c.Close()
	}
}

// get returns an idle connection to key, newest first, or a new one.
func (t *Transport) get(ctx context.Context, key string, req *http.Request) (*conn, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	var stale []*conn
	t.mu.Lock()
	var pc *conn
	for list := t.idle[key]; len(list) > 0; {
		last := list[len(list)-1]
		list = list[:len(list)-1]
		t.idle[key] = list
		if t.IdleConnTimeout > 0 && time.Since(last.idled) > t.IdleConnTimeout {
			stale = append(stale, last)
			continue
		}
		pc = last
		break
	}
	t.mu.Unlock()
	for _, s := range stale {
		_ = s.c.Close()
	}
	if pc != nil {
		return pc, true, nil
	}
	pc, err := t.dial(ctx, req)
	return pc, false, err
}

// dial opens a connection for req's URL.
func (t *Transport) dial(ctx context.Context, req *http.Request) (*conn, error) {
	addr := hostPort(req.URL.Scheme, req.URL.Host)
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if req.URL.Scheme == "https" {
		cfg := t.TLSClientConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = req.URL.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, err
		}
		c = tc
	}
	return &conn{c: c, br: bufio.NewReaderSize(c, bufSize), bw: bufio.NewWriterSize(c, bufSize)}, nil
}

// hostPort adds the scheme's default port to a host without one.
func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(host, "443")
	}
	return net.JoinHostPort(host, "80")
}

// CloseIdleConnections closes the connections not in use.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			_ = pc.c.Close()
		}
	}
}

// body is an answer's body: read to its end, it gives its connection
// back to the pool; closed before, it closes the connection.
type body struct {
	rc       io.ReadCloser
	t        *Transport
	key      string
	pc       *conn
	stop     func() bool
	ctx      context.Context
	reusable bool

	mu   sync.Mutex
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
		return n, err
	}
	if err != nil {
		if cerr := b.ctx.Err(); cerr != nil {
			err = fmt.Errorf("synchttp: %w (%v)", cerr, err)
		}
		b.finish(false)
	}
	return n, err
}

func (b *body) Close() error {
	b.finish(false)
	return nil
}

// finish ends the exchange once: whole says the body was read to its end.
func (b *body) finish(whole bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	b.t.release(b.key, b.pc, b.stop, whole && b.reusable)
}
