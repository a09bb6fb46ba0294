package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/internal/pki"
	"github.com/sovra/sovra/internal/preplisten"
)

// sniffTimeout bounds how long a new connection may take to send its first
// byte, which says whether it speaks TLS.
const sniffTimeout = 10 * time.Second

// maxSniffing bounds the connections waiting to say whether they speak
// TLS; more are closed at once, so idle connections cannot pile up
// goroutines before any other limit sees them.
const maxSniffing = 1024

// tlsRecordHandshake is the first byte of every TLS connection.
const tlsRecordHandshake = 0x16

// listenerConfig says what the API port serves: TLS to peers that ask for
// the cluster's server name (with the cluster certificate), TLS with the
// public certificate to everyone else when there is one, else plain HTTP.
type listenerConfig struct {
	keys   *pki.Keyring  // nil outside a cluster
	public *pki.FileCert // nil: clients speak plain HTTP
}

// tlsConfig chooses the certificate by the server name the client sends.
func (lc listenerConfig) tlsConfig() *tls.Config {
	var peer *tls.Config
	if lc.keys != nil {
		peer = lc.keys.ServerConfig(nil)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			switch {
			case hello.ServerName == cluster.ServerName && peer != nil:
				return peer, nil
			case lc.public != nil:
				return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: lc.public.GetCertificate,
					NextProtos: []string{"http/1.1"}}, nil
			}
			return nil, errors.New("this port serves TLS to cluster peers only; clients speak plain HTTP")
		},
	}
}

// listen opens the API's listener. It hands out plain connections as they
// are and TLS ones wrapped in tls.Server, deciding by each connection's
// first byte, which it waits for off the accept loop. With a public
// certificate, plain connections are closed: clients must use TLS.
func listen(addr string, lc listenerConfig) (*preplisten.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	cfg, plain := lc.tlsConfig(), lc.public == nil
	return preplisten.New(ln, func(conn net.Conn) (net.Conn, error) { return sniff(conn, cfg, plain) }, maxSniffing), nil
}

// sniff reads a connection's first byte and says what it speaks.
func sniff(conn net.Conn, cfg *tls.Config, plainAllowed bool) (net.Conn, error) {
	var first [1]byte
	conn.SetReadDeadline(time.Now().Add(sniffTimeout))
	if _, err := conn.Read(first[:]); err != nil {
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: conn, first: first[0], has: true}
	switch {
	case first[0] == tlsRecordHandshake:
		return &tlsConn{tls.Server(pc, cfg)}, nil
	case !plainAllowed:
		return nil, errors.New("plain HTTP on a TLS port")
	}
	return pc, nil
}

// peekedConn gives back the byte the listener read first. It exposes the
// socket (syscall.Conn) so the API can notice a client's hang-up.
type peekedConn struct {
	net.Conn
	first byte
	has   bool
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.has && len(p) > 0 {
		p[0], c.has = c.first, false
		return 1, nil
	}
	return c.Conn.Read(p)
}

// SyscallConn reaches the socket.
func (c *peekedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	return sc.SyscallConn()
}

// tlsConn is a server TLS connection whose SetReadDeadline never fails.
// fasthttp sets a read deadline before it runs the handshake of a TLS
// connection and panics ("BUG: error in SetReadDeadline") when that fails,
// which it does on a connection closed meanwhile (by a graceful stop's
// sweep of idle connections, or by the client): the handshake that comes
// next reports the closed connection instead, as an ordinary error.
type tlsConn struct{ *tls.Conn }

func (c *tlsConn) SetReadDeadline(t time.Time) error {
	_ = c.Conn.SetReadDeadline(t)
	return nil
}
