package router

import (
	"sync"
	"time"

	"github.com/sovra/sovra/node/router/load"
)

// ledger remembers when this node's recent requests to each replica on a
// peer were sent and when they ended. A peer's load report counts the
// requests running and queued there when it was made, this node's among
// them; those that have ended since are gone, though the report still
// shows them. The ledger says how many, so that a node that sends a peer
// most of its traffic (or all of it, as the one entry of a cluster) does
// not take a replica that just finished its requests for a busy one until
// the next report.
type ledger struct {
	mu    sync.Mutex
	ended map[replicaKey][]span
	sends meters[replicaKey]
	out   inflight[replicaKey]
}

type replicaKey struct{ node, model string }

// span is one request's life, from its send to its end.
type span struct{ sent, ended time.Time }

// ledgerKeep bounds the ended requests kept per replica: far more than
// end within one report's age on any realistic replica.
const ledgerKeep = 256

// sent notes a request to node's replica of model; the returned func
// records its end.
func (l *ledger) sent(node, model string) (ended func()) {
	at := time.Now()
	k := replicaKey{node, model}
	l.sends.add(k, at)
	done := l.out.begin(k, at)
	return func() {
		done()
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ended == nil {
			l.ended = map[replicaKey][]span{}
		}
		list := append(l.ended[k], span{sent: at, ended: time.Now()})
		if len(list) > ledgerKeep {
			list = append(list[:0:0], list[len(list)-ledgerKeep:]...)
		}
		l.ended[k] = list
	}
}

// runningFor is how long the first of this node's requests on node's
// replica of model has been running there, when this node sends all the
// requests there are (ld, its corrected report, counts no others): as
// the replica serves them in order, the oldest one still out started when
// it was sent or, if one was ahead of it, when that one ended. 0: unknown.
func (l *ledger) runningFor(node, model string, ld load.Load, now time.Time) time.Duration {
	if ld.Running+ld.Queued > max(0, ld.Outstanding-ld.Pending) {
		return 0 // other nodes' requests are there too
	}
	sent, lastEnd, ok := l.out.oldest(replicaKey{node, model})
	if !ok {
		return 0
	}
	return now.Sub(later(sent, lastEnd))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sendRate is the recent rate of this node's requests to node's replica
// of model, per second, measured as the replica measures its arrivals.
func (l *ledger) sendRate(node, model string, now time.Time) float64 {
	return l.sends.rate(replicaKey{node, model}, now)
}

// endedSince counts the requests to node's replica of model that were
// sent before t and ended after it.
func (l *ledger) endedSince(node, model string, t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	list := l.ended[replicaKey{node, model}]
	for i := len(list) - 1; i >= 0 && list[i].ended.After(t); i-- {
		if list[i].sent.Before(t) {
			n++
		}
	}
	return n
}

// correct takes from a peer's reported load the requests of this node
// that the report counted and that have ended since it arrived: queued
// ones first, as the replica's queue moves up when one ends. It never
// takes the report below this node's requests still there from before
// it (Outstanding less Pending).
func (l *ledger) correct(node, model string, ld load.Load, now time.Time) load.Load {
	if ld.Age <= 0 || ld.Running+ld.Queued == 0 {
		return ld
	}
	gone := l.endedSince(node, model, now.Add(-ld.Age))
	floor := max(0, ld.Outstanding-ld.Pending)
	gone = min(gone, max(0, ld.Running+ld.Queued-floor))
	q := min(gone, ld.Queued)
	ld.Queued -= q
	ld.Running -= gone - q
	return ld
}
