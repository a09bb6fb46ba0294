package ui

import (
	"net/netip"
	"sync"
	"time"
)

// Failed sign-ins are limited per client (an IPv4 address, an IPv6 /64)
// and for the node as a whole: past the limit, sign-ins are refused
// without looking at the credential until the oldest failure in the
// window has aged out.
const (
	failWindow       = time.Minute
	failsPerClient   = 5
	failsPerNode     = 50
	maxTrackedClient = 10000
)

// failLimiter counts recent failed sign-ins.
type failLimiter struct {
	now func() time.Time

	mu     sync.Mutex
	client map[netip.Prefix][]time.Time
	node   []time.Time
}

func newFailLimiter(now func() time.Time) *failLimiter {
	return &failLimiter{now: now, client: map[netip.Prefix][]time.Time{}}
}

// clientKey groups addresses: one IPv4 address, or an IPv6 /64.
func clientKey(ip string) netip.Prefix {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// wait says how long a client must wait before it may try to sign in
// again (0: it may now).
func (l *failLimiter) wait(ip string) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := clientKey(ip)
	l.client[k] = recent(l.client[k], now)
	l.node = recent(l.node, now)
	var w time.Duration
	if fs := l.client[k]; len(fs) >= failsPerClient {
		w = fs[len(fs)-failsPerClient].Add(failWindow).Sub(now)
	}
	if len(l.node) >= failsPerNode {
		w = max(w, l.node[len(l.node)-failsPerNode].Add(failWindow).Sub(now))
	}
	if len(l.client[k]) == 0 {
		delete(l.client, k)
	}
	return max(w, 0)
}

// fail records a failed sign-in of a client.
func (l *failLimiter) fail(ip string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.client) >= maxTrackedClient {
		for k, fs := range l.client {
			if len(recent(fs, now)) == 0 {
				delete(l.client, k)
			}
		}
	}
	k := clientKey(ip)
	l.client[k] = keepLast(append(recent(l.client[k], now), now), failsPerClient)
	l.node = keepLast(append(recent(l.node, now), now), failsPerNode)
}

// recent keeps the failures within the window.
func recent(fs []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= failWindow {
		i++
	}
	return fs[i:]
}

func keepLast(fs []time.Time, n int) []time.Time {
	if len(fs) > n {
		return append([]time.Time(nil), fs[len(fs)-n:]...)
	}
	return fs
}
