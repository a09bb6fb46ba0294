// Package faultnet injects network faults between named nodes of one test
// process: partitions (new connections refused, open ones cut) and slow
// links (latency added to every write). It wraps raft stream layers and
// HTTP dialers; every connection a node makes goes through its wrapper, so
// cutting the dialing side is enough to cut a link both ways.
package faultnet

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// Net is the fault plan shared by the nodes of a test.
type Net struct {
	mu      sync.Mutex
	owner   map[string]string // address -> node
	cut     map[link]bool
	latency map[link]time.Duration
	conns   map[*conn]struct{}
}

// link is an unordered pair of nodes.
type link struct{ a, b string }

func linkOf(a, b string) link {
	if a > b {
		a, b = b, a
	}
	return link{a, b}
}

// New returns a net without faults.
func New() *Net {
	return &Net{owner: map[string]string{}, cut: map[link]bool{}, latency: map[link]time.Duration{}, conns: map[*conn]struct{}{}}
}

// Register names the node that listens on addrs (raft and HTTP).
func (n *Net) Register(node string, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.owner[a] = node
	}
}

// Partition cuts every link between a node of one group and a node of the
// other: open connections are closed and new ones refused.
func (n *Net) Partition(groupA, groupB []string) {
	n.mu.Lock()
	for _, a := range groupA {
		for _, b := range groupB {
			if a != b {
				n.cut[linkOf(a, b)] = true
			}
		}
	}
	victims := n.cutConnsLocked()
	n.mu.Unlock()
	closeAll(victims)
}

// Isolate cuts node off from every other registered node.
func (n *Net) Isolate(node string) {
	n.Partition([]string{node}, n.nodes())
}

// Heal removes every partition; latencies stay.
func (n *Net) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[link]bool{}
}

// SetLatency adds d to every write between a and b (0 removes it).
func (n *Net) SetLatency(a, b string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d <= 0 {
		delete(n.latency, linkOf(a, b))
		return
	}
	n.latency[linkOf(a, b)] = d
}

// Cut reports whether a and b are partitioned.
func (n *Net) Cut(a, b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[linkOf(a, b)]
}

func (n *Net) nodes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, node := range n.owner {
		if !seen[node] {
			seen[node] = true
			out = append(out, node)
		}
	}
	return out
}

func (n *Net) cutConnsLocked() []*conn {
	var out []*conn
	for c := range n.conns {
		if n.cut[linkOf(c.from, c.to)] {
			out = append(out, c)
			delete(n.conns, c)
		}
	}
	return out
}

func closeAll(cs []*conn) {
	for _, c := range cs {
		c.Conn.Close()
	}
}

// refused is what a dial across a cut link returns: the error of a real
// refused connection, so callers classify it as "never sent".
func refused(addr string) error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED, Addr: fakeAddr(addr)}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// dial checks the plan, then dials with do and tracks the connection.
func (n *Net) dial(from, addr string, do func() (net.Conn, error)) (net.Conn, error) {
	n.mu.Lock()
	to := n.owner[addr]
	blocked := n.cut[linkOf(from, to)]
	n.mu.Unlock()
	if blocked {
		return nil, refused(addr)
	}
	raw, err := do()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: raw, net: n, from: from, to: to}
	n.mu.Lock()
	if n.cut[linkOf(from, to)] { // cut while dialling
		n.mu.Unlock()
		raw.Close()
		return nil, refused(addr)
	}
	n.conns[c] = struct{}{}
	n.mu.Unlock()
	return c, nil
}

func (n *Net) delay(from, to string) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.latency[linkOf(from, to)]
}

func (n *Net) drop(c *conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, c)
}

// conn is a connection dialled by from to to.
type conn struct {
	net.Conn
	net      *Net
	from, to string
}

func (c *conn) Write(p []byte) (int, error) {
	if d := c.net.delay(c.from, c.to); d > 0 {
		time.Sleep(d)
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	c.net.drop(c)
	return c.Conn.Close()
}

// StreamLayer returns a wrapper for node's raft stream layer (for
// cluster.Config.StreamLayer).
func (n *Net) StreamLayer(node string) func(raft.StreamLayer) raft.StreamLayer {
	return func(inner raft.StreamLayer) raft.StreamLayer {
		return &streamLayer{StreamLayer: inner, net: n, from: node}
	}
}

type streamLayer struct {
	raft.StreamLayer
	net  *Net
	from string
}

func (l *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.net.dial(l.from, string(addr), func() (net.Conn, error) { return l.StreamLayer.Dial(addr, timeout) })
}

// DialContext returns a dialer for node's HTTP transport
// (http.Transport.DialContext).
func (n *Net) DialContext(node string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return n.dial(node, addr, func() (net.Conn, error) { return d.DialContext(ctx, network, addr) })
	}
}
