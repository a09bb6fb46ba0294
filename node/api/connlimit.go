package api

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// connLimits caps the connections open at once, in all and per client
// address (an IPv6 client's /64, which one host usually holds whole). It
// counts at accept and uncounts on fasthttp's ConnState hook, so the
// connections handed to fasthttp stay unwrapped (the hang-up watch reads
// their socket).
type connLimits struct {
	max, perIP int

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
	open  map[net.Conn]netip.Addr
}

func newConnLimits(max, perIP int) *connLimits {
	return &connLimits{max: max, perIP: perIP, byIP: map[netip.Addr]int{}, open: map[net.Conn]netip.Addr{}}
}

// listener applies the caps to the connections ln accepts.
func (l *connLimits) listener(ln net.Listener) net.Listener {
	if l.max <= 0 && l.perIP <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, l: l}
}

type limitListener struct {
	net.Listener
	l *connLimits
}

// Accept returns the next connection within the caps; the others are
// answered and closed.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if refusal := ll.l.admit(c); refusal != "" {
			refuse(c, refusal)
			continue
		}
		return c, nil
	}
}

// Refusals of a connection, as raw HTTP responses.
const (
	refusedTotal = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 119\r\n\r\n" +
		`{"error":{"message":"The server has too many open connections.","type":"service_unavailable_error","code":"too_many_connections"}}`
	refusedPerIP = "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 120\r\n\r\n" +
		`{"error":{"message":"Too many open connections from your address.","type":"rate_limit_error","code":"too_many_connections"}}`
)

// admit counts c, or says why it is refused.
func (l *connLimits) admit(c net.Conn) string {
	ip := clientAddr(c)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.total >= l.max:
		return refusedTotal
	case l.perIP > 0 && ip.IsValid() && l.byIP[ip] >= l.perIP:
		return refusedPerIP
	}
	l.total++
	l.byIP[ip]++
	l.open[c] = ip
	return ""
}

// track is called from fasthttp's ConnState hook: a connection closed or
// hijacked no longer counts.
func (l *connLimits) track(c net.Conn, st fasthttp.ConnState) {
	if st != fasthttp.StateClosed && st != fasthttp.StateHijacked {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ip, ok := l.open[c]
	if !ok {
		return
	}
	delete(l.open, c)
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// clientAddr is the address a client is capped by.
func clientAddr(c net.Conn) netip.Addr {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// refuseWrite bounds the write of a refusal, so a client that does not
// read cannot hold the accept loop.
const refuseWrite = 100 * time.Millisecond

// refuse answers a refused connection and closes it. Over TLS it is closed
// without an answer: the handshake would let the client hold the accept
// loop.
func refuse(c net.Conn, answer string) {
	if _, isTLS := c.(*tls.Conn); !isTLS {
		_ = c.SetWriteDeadline(time.Now().Add(refuseWrite))
		_, _ = c.Write([]byte(answer))
	}
	_ = c.Close()
}
