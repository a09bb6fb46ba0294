package api

import (
	"net"
	"sync"

	"github.com/valyala/fasthttp"
)

// freshConns tracks the connections that have not carried a request yet:
// accepted, but no request has reached a handler.
// HTTP clients dial spare connections they may never use; fasthttp counts
// such a connection as busy for its first five seconds, so without this a
// graceful stop would wait on it as if a request were in flight.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newFreshConns() *freshConns { return &freshConns{conns: map[net.Conn]struct{}{}} }

// track is fasthttp's ConnState hook. fasthttp calls a connection active
// while it waits for the first request, so only used() ends freshness.
func (f *freshConns) track(c net.Conn, st fasthttp.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch st {
	case fasthttp.StateNew:
		f.conns[c] = struct{}{}
	case fasthttp.StateActive:
	default:
		delete(f.conns, c)
	}
}

// used records that a request on c reached a handler.
func (f *freshConns) used(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

// closeAll closes the connections that never carried a request.
func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.Close()
		delete(f.conns, c)
	}
}
