package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/internal/pki"
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

// sniffListener hands out plain connections as they are and TLS ones
// wrapped in tls.Server, deciding by each connection's first byte, which
// it waits for off the accept loop. With a public certificate, plain
// connections are closed: clients must use TLS.
type sniffListener struct {
	net.Listener
	tls        *tls.Config
	plainAllow bool
	maxPending int
	ready      chan net.Conn
	done       chan struct{}
	err        error
	once       sync.Once
	wg         sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{}
	closed  bool
}

func listen(addr string, lc listenerConfig) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	l := &sniffListener{Listener: ln, tls: lc.tlsConfig(), plainAllow: lc.public == nil, maxPending: maxSniffing,
		ready: make(chan net.Conn), done: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.loop()
	return l, nil
}

func (l *sniffListener) loop() {
	defer l.wg.Done()
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			l.err = err
			l.once.Do(func() { close(l.done) })
			return
		}
		if !l.hold(conn) {
			conn.Close()
			continue
		}
		l.wg.Add(1)
		go l.sniff(conn)
	}
}

func (l *sniffListener) hold(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.pending) >= l.maxPending {
		return false
	}
	l.pending[conn] = struct{}{}
	return true
}

func (l *sniffListener) sniff(conn net.Conn) {
	defer l.wg.Done()
	var first [1]byte
	conn.SetReadDeadline(time.Now().Add(sniffTimeout))
	_, err := conn.Read(first[:])
	conn.SetReadDeadline(time.Time{})
	l.mu.Lock()
	delete(l.pending, conn)
	l.mu.Unlock()
	if err != nil {
		conn.Close()
		return
	}
	pc := &peekedConn{Conn: conn, first: first[0], has: true}
	var out net.Conn = pc
	switch {
	case first[0] == tlsRecordHandshake:
		out = tls.Server(pc, l.tls)
	case !l.plainAllow:
		conn.Close()
		return
	}
	select {
	case l.ready <- out:
	case <-l.done:
		conn.Close()
	}
}

// Accept returns the next connection, TLS ones before their handshake
// (the server runs it).
func (l *sniffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes connections not yet handed out.
func (l *sniffListener) Close() error {
	l.mu.Lock()
	l.closed = true
	for c := range l.pending {
		c.Close()
	}
	l.mu.Unlock()
	err := l.Listener.Close()
	l.wg.Wait()
	return err
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
