package router

import (
	"context"
	"errors"
	"math"

	"github.com/sovra/sovra/node/router/balance"
)

// Sending back. A node that forwards a request chose its replica from
// load reports up to a frame old; other nodes may have filled the
// replica's slots since. The replica's own node knows its queue exactly.
// When the forwarding node allows it (first attempt, no residency
// restriction, the time-to-finish policy), the serving node looks again
// before queueing the request: every slot taken and, by its own view,
// another replica answering sooner by more than the way back costs, it
// sends the request back unserved (ErrSentBack) and the forwarding node
// routes it again without this replica. A request is sent back at most
// once, and never once it queued or started here.

// ErrSentBack is a forwarded request this node did not serve because every
// slot here was taken and another replica would answer it sooner.
var ErrSentBack = errors.New("every slot of this replica is taken and another would answer sooner: sent back to be routed again")

// SentBackCode is the error code a node sends back a request with, which
// the forwarding node reads to route it again.
const SentBackCode = "sent_back"

// sendBackShare and sendBackCostMs are the margin another replica must win
// by: the way back and the second forward, and the error of estimates
// made from reports a frame old.
const (
	sendBackShare  = 0.1
	sendBackCostMs = 5
)

type sendBackKey struct{}

// AllowSendBack marks an attempt that the node it is forwarded to may
// send back (a peer transport reads it and tells the peer).
func AllowSendBack(ctx context.Context) context.Context {
	return context.WithValue(ctx, sendBackKey{}, true)
}

// MayBeSentBack says whether the attempt in ctx may be sent back by the
// node it is forwarded to.
func MayBeSentBack(ctx context.Context) bool {
	v, _ := ctx.Value(sendBackKey{}).(bool)
	return v
}

// ForwardedMaySendBack marks ctx as serving a forwarded request (see
// Forwarded) that this node may send back unserved.
func ForwardedMaySendBack(ctx context.Context) context.Context {
	return context.WithValue(ctx, forwardedKey{}, forwardedSendBack)
}

// sendBack says whether this node should send back the forwarded request
// q rather than queue it: see the comment at the top of the file.
func (r *Router) sendBack(ctx context.Context, q request) bool {
	if r.state == nil || r.bal.Policy() != balance.TimeToFinish {
		return false
	}
	if v, _ := ctx.Value(forwardedKey{}).(forwarding); v != forwardedSendBack {
		return false
	}
	if st := r.queue(r.label(q.model)).Stats(); st.Running < st.Slots {
		return false
	}
	m := r.match(q.model)
	if len(m.nodes) < 2 {
		return false
	}
	pl := plan{tag: m.tag, key: normalize(m.tag), nodes: m.nodes}
	cands, _ := r.candidates(pl, nil)
	est := r.bal.Finish(q.balanced(pl.key), cands)
	here, best := math.Inf(1), math.Inf(1)
	for i, c := range cands {
		if c.Node == r.self {
			here = est[i]
		} else {
			best = min(best, est[i])
		}
	}
	return !math.IsInf(here, 1) && best*(1+sendBackShare)+sendBackCostMs < here
}

// sentBack says whether err is a peer sending the attempt back.
func sentBack(ctx context.Context, err error) bool {
	if err == nil || !MayBeSentBack(ctx) {
		return false
	}
	code, _ := DecisionOf(ctx).PeerError()
	return code == SentBackCode
}
