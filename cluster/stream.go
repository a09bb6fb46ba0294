package cluster

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sovra/sovra/internal/pki"
)

// streamLayer is raft's TCP stream layer, always over mutual TLS with the
// cluster's certificates: a peer proves its membership in the handshake,
// before raft reads a byte. It tracks its connections: raft's transport
// leaves accepted and pooled ones open at shutdown, so Close closes them.
type streamLayer struct {
	net.Listener
	keys *pki.Keyring

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// raftServerName is the SNI of raft connections.
const raftServerName = "sovra-raft"

// listenStream listens on addr; accept decides which nodes (by the id
// their certificate names) may connect.
func listenStream(addr string, keys *pki.Keyring, accept func(nodeID string) error) (*streamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listen: %w", err)
	}
	return &streamLayer{Listener: newHandshakeListener(ln, keys.ServerConfig(accept)), keys: keys,
		conns: map[net.Conn]struct{}{}}, nil
}

// Accept tracks accepted connections.
func (l *streamLayer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.track(c)
}

// Dial connects to a peer's raft address.
func (l *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	tc := tlsClient(conn, l.keys.ClientConfig(raftServerName))
	conn.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cluster: raft handshake with %s: %w", addr, err)
	}
	conn.SetDeadline(time.Time{})
	return l.track(tc)
}

func (l *streamLayer) track(c net.Conn) (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeAll closes the listener and every connection.
func (l *streamLayer) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	l.mu.Unlock()
	l.Listener.Close()
	for c := range conns {
		c.(*trackedConn).Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l *streamLayer
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
