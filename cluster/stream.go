package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's TCP stream layer, optionally over mutual TLS. It
// tracks its connections: raft's transport leaves accepted and pooled ones
// open at shutdown, so Close closes them.
type streamLayer struct {
	net.Listener
	tls *tls.Config // client side; nil for plain TCP

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func listenStream(addr string, cfg *tls.Config) (*streamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listen: %w", err)
	}
	l := &streamLayer{Listener: ln, conns: map[net.Conn]struct{}{}}
	if cfg != nil {
		cfg = cfg.Clone()
		cfg.NextProtos = nil // raft is not HTTP, whatever the shared config says
		l.tls = cfg
		l.Listener = tls.NewListener(ln, cfg)
	}
	return l, nil
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
	c, err := l.dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	return l.track(c)
}

func (l *streamLayer) dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if l.tls == nil {
		return d.Dial("tcp", string(addr))
	}
	cfg := l.tls.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(addr))
		if err != nil {
			return nil, err
		}
		cfg.ServerName = host
	}
	return (&tls.Dialer{NetDialer: d, Config: cfg}).Dial("tcp", string(addr))
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
