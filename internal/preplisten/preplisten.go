// Package preplisten is a listener that prepares each accepted connection
// (a TLS handshake, a look at its first byte) before Accept hands it out:
// off the accept loop, so one slow client cannot stall the others, and
// with a bound on how many connections may be in preparation at once.
package preplisten

import (
	"net"
	"sync"
)

// Prepare readies a new connection. It returns the connection to hand
// out (possibly a wrapper), or an error, and the connection is closed.
// It must bound its own time (deadlines on conn).
type Prepare func(conn net.Conn) (net.Conn, error)

// Listener hands out prepared connections.
type Listener struct {
	net.Listener
	prepare Prepare
	ready   chan net.Conn
	done    chan struct{}
	err     error // set before done is closed by the accept loop
	once    sync.Once
	wg      sync.WaitGroup

	mu         sync.Mutex
	pending    map[net.Conn]struct{}
	maxPending int
	closed     bool
}

// New starts preparing the connections ln accepts; more than maxPending
// in preparation at once are closed as they come.
func New(ln net.Listener, prepare Prepare, maxPending int) *Listener {
	l := &Listener{Listener: ln, prepare: prepare, ready: make(chan net.Conn), done: make(chan struct{}),
		pending: map[net.Conn]struct{}{}, maxPending: maxPending}
	l.wg.Add(1)
	go l.loop()
	return l
}

// SetMaxPending changes the bound (tests).
func (l *Listener) SetMaxPending(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxPending = n
}

func (l *Listener) loop() {
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
		go l.run(conn)
	}
}

func (l *Listener) hold(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.pending) >= l.maxPending {
		return false
	}
	l.pending[conn] = struct{}{}
	return true
}

func (l *Listener) run(conn net.Conn) {
	defer l.wg.Done()
	out, err := l.prepare(conn)
	l.mu.Lock()
	delete(l.pending, conn)
	l.mu.Unlock()
	if err != nil {
		conn.Close()
		return
	}
	select {
	case l.ready <- out:
	case <-l.done:
		conn.Close()
	}
}

// Accept returns the next prepared connection.
func (l *Listener) Accept() (net.Conn, error) {
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

// Close stops accepting, closes the connections in preparation and
// returns once no preparation runs.
func (l *Listener) Close() error {
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
