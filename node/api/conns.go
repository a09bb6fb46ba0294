package api

import (
	"net"
	"sync"
	"sync/atomic"

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
	// n is len(conns), read without the lock: on kept-alive connections
	// there is mostly nothing fresh, and every request's state changes
	// then cost no lock.
	n atomic.Int32
}

func newFreshConns() *freshConns { return &freshConns{conns: map[net.Conn]struct{}{}} }

// track is fasthttp's ConnState hook. fasthttp calls a connection active
// while it waits for the first request, so only used() ends freshness.
func (f *freshConns) track(c net.Conn, st fasthttp.ConnState) {
	if st == fasthttp.StateActive || st != fasthttp.StateNew && f.n.Load() == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == fasthttp.StateNew {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
	f.n.Store(int32(len(f.conns)))
}

// used records that a request on c reached a handler.
func (f *freshConns) used(c net.Conn) {
	if f.n.Load() == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
	f.n.Store(int32(len(f.conns)))
}

// closeAll closes the connections that never carried a request.
func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.n.Store(0)
	for c := range f.conns {
		_ = c.Close()
		delete(f.conns, c)
	}
}
