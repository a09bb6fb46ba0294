package cluster

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// handshakeTimeout bounds a TLS handshake on the raft port: a client that
// connects and sends nothing holds a goroutine this long at most.
const handshakeTimeout = 5 * time.Second

// handshakeListener completes each TLS handshake before Accept returns the
// connection, off the accept loop, so raft only ever sees authenticated
// peers and one slow client cannot stall the others. A failed handshake
// closes the connection; nothing reaches raft.
type handshakeListener struct {
	net.Listener
	cfg   *tls.Config
	ready chan net.Conn
	done  chan struct{}
	err   error // set before done is closed by the accept loop

	mu      sync.Mutex
	pending map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
	once    sync.Once
}

func newHandshakeListener(ln net.Listener, cfg *tls.Config) *handshakeListener {
	l := &handshakeListener{Listener: ln, cfg: cfg, ready: make(chan net.Conn), done: make(chan struct{}),
		pending: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.loop()
	return l
}

func (l *handshakeListener) loop() {
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
		go l.handshake(conn)
	}
}

func (l *handshakeListener) hold(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[conn] = struct{}{}
	return true
}

func (l *handshakeListener) release(conn net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pending, conn)
}

func (l *handshakeListener) handshake(conn net.Conn) {
	defer l.wg.Done()
	defer l.release(conn)
	tc := tls.Server(conn, l.cfg)
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	select {
	case l.ready <- tc:
	case <-l.done:
		conn.Close()
	}
}

// Accept returns the next authenticated connection.
func (l *handshakeListener) Accept() (net.Conn, error) {
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

// Close stops accepting and closes the connections still in their
// handshake; it returns once no handshake runs.
func (l *handshakeListener) Close() error {
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

func tlsClient(conn net.Conn, cfg *tls.Config) *tls.Conn { return tls.Client(conn, cfg) }
