package api

import (
	"context"
	"net"
	"time"
)

// hangupPoll is how often an in-flight request checks whether its client is
// still connected. fasthttp does not notice a closed connection while a
// handler runs, so without this a client that gives up would keep a backend
// slot busy until the generation ends.
const hangupPoll = 100 * time.Millisecond

// watchHangup cancels when the client behind conn closes its side of the
// connection, until ctx ends. It only peeks at the socket, so bytes of a
// pipelined next request are left for the server to read.
func watchHangup(ctx context.Context, conn net.Conn, cancel context.CancelFunc) {
	closed := peeker(conn)
	if closed == nil {
		return
	}
	go func() {
		t := time.NewTicker(hangupPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if closed() {
					cancel()
					return
				}
			}
		}
	}()
}
