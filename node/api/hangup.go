package api

import (
	"context"
	"net"
	"sync"
	"time"
)

// hangupPoll is how often an in-flight request checks whether its client is
// still connected. fasthttp does not notice a closed connection while a
// handler runs, so without this a client that gives up would keep a backend
// slot busy until the generation ends.
const hangupPoll = 100 * time.Millisecond

// hangups watches the connections of in-flight requests: one goroutine
// peeks at every watched socket each hangupPoll and cancels the requests
// whose client closed its side. It runs while something is watched and
// stops at the first tick that finds nothing. A goroutine or a timer per
// request would cost a wake-up of another thread each (a new timer earlier
// than any other wakes the network poller), about 10% of the CPU of a
// short request.
type hangups struct {
	mu      sync.Mutex
	next    uint64
	watched map[uint64]hangupWatch
	running bool
}

// hangupWatch is one watched request.
type hangupWatch struct {
	ctx    context.Context
	closed func() bool
	cancel context.CancelFunc
}

// watch cancels when the client behind conn closes its side of the
// connection, until the returned stop is called or ctx ends. It only peeks
// at the socket, so bytes of a pipelined next request are left for the
// server to read.
func (h *hangups) watch(ctx context.Context, conn net.Conn, cancel context.CancelFunc) (stop func()) {
	closed := peeker(conn)
	if closed == nil {
		return func() {}
	}
	h.mu.Lock()
	if h.watched == nil {
		h.watched = map[uint64]hangupWatch{}
	}
	id := h.next
	h.next++
	h.watched[id] = hangupWatch{ctx: ctx, closed: closed, cancel: cancel}
	if !h.running {
		h.running = true
		go h.run()
	}
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.watched, id)
		h.mu.Unlock()
	}
}

// run checks the watched connections every hangupPoll until a tick finds
// none.
func (h *hangups) run() {
	t := time.NewTicker(hangupPoll)
	defer t.Stop()
	var due []hangupWatch
	for range t.C {
		h.mu.Lock()
		if len(h.watched) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		due = due[:0]
		for _, w := range h.watched {
			if w.ctx.Err() == nil {
				due = append(due, w)
			}
		}
		h.mu.Unlock()
		for _, w := range due {
			if w.closed() {
				w.cancel()
			}
		}
		clear(due)
	}
}

// withHangup returns cancel preceded by the end of the hangup watch on
// conn.
func (h *hangups) withHangup(ctx context.Context, conn net.Conn, cancel context.CancelFunc) context.CancelFunc {
	stop := h.watch(ctx, conn, cancel)
	return func() { stop(); cancel() }
}
