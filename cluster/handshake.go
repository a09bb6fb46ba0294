package cluster

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/sovra/sovra/internal/preplisten"
)

// handshakeTimeout bounds a TLS handshake on the raft port: a client that
// connects and sends nothing holds a goroutine this long at most.
const handshakeTimeout = 5 * time.Second

// maxHandshakes bounds the raft connections in their handshake at once.
const maxHandshakes = 256

// newHandshakeListener completes each TLS handshake before Accept returns
// the connection, so raft only ever sees authenticated peers. A failed
// handshake closes the connection; nothing reaches raft.
func newHandshakeListener(ln net.Listener, cfg *tls.Config) net.Listener {
	return preplisten.New(ln, func(conn net.Conn) (net.Conn, error) {
		tc := tls.Server(conn, cfg)
		conn.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		conn.SetDeadline(time.Time{})
		return tc, nil
	}, maxHandshakes)
}

func tlsClient(conn net.Conn, cfg *tls.Config) *tls.Conn { return tls.Client(conn, cfg) }
