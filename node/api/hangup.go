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

// watchHangup cancels when the client behind conn closes its side of the
// connection, until the returned stop is called or ctx ends. It only peeks
// at the socket, so bytes of a pipelined next request are left for the
// server to read. The checks run on a timer rather than a goroutine of
// their own: a request shorter than hangupPoll (most non-streamed ones)
// costs no goroutine and no wake-up.
func watchHangup(ctx context.Context, conn net.Conn, cancel context.CancelFunc) (stop func()) {
	closed := peeker(conn)
	if closed == nil {
		return func() {}
	}
	w := &hangupWatch{}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(hangupPoll, func() {
		if ctx.Err() != nil {
			return
		}
		if closed() {
			cancel()
			return
		}
		w.mu.Lock()
		if !w.stopped {
			w.t.Reset(hangupPoll)
		}
		w.mu.Unlock()
	})
	return w.stop
}

// hangupWatch is one request's hangup timer.
type hangupWatch struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func (w *hangupWatch) stop() {
	w.mu.Lock()
	w.stopped = true
	w.t.Stop()
	w.mu.Unlock()
}

// withHangup returns cancel preceded by stopping the hangup watch on conn.
func withHangup(ctx context.Context, conn net.Conn, cancel context.CancelFunc) context.CancelFunc {
	stop := watchHangup(ctx, conn, cancel)
	return func() { stop(); cancel() }
}
