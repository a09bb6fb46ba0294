package api

import (
	"fmt"
	"math"
	"strings"
	"time"

	wire "github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/scheduler"
)

// Deployment statuses the admin views add to the scheduler's, for a
// deployment whose replicas are placed but fewer than wanted are ready.
const (
	StatusDegraded    scheduler.Status = "degraded"    // some replicas ready
	StatusUnavailable scheduler.Status = "unavailable" // none ready
)

// peerHealth is what the admin views ask the router: whether it has
// heard nothing from a node for longer than its down-after.
type peerHealth interface {
	PeerUnhealthy(node string) bool
}

// overlay marks down, in the views' copy of the state, the nodes this
// node has heard nothing from lately (the router's word), as the leader
// will once their heartbeats are overdue: their replicas are then not
// ready in any view at once, and nothing new is shown placed there.
func overlay(snap *state.State, gone func(string) bool) {
	if gone == nil {
		return
	}
	now := time.Now().UnixMilli()
	for id, n := range snap.Nodes {
		if n != nil && n.Status != state.NodeDown && gone(id) {
			n.Status, n.StatusSince = state.NodeDown, now
			n.StatusReason = "no load report from it has reached this node lately"
		}
	}
}

// newPlacementView shows a replica as it serves: ready only when reported
// ready on a node that is not down; a replica on a down node is of
// unknown state, with the state its node last reported.
func newPlacementView(pl *state.Placement, node *state.Node) wire.Placement {
	pv := wire.Placement{Node: pl.Node, State: string(pl.State), Reason: pl.Reason}
	switch {
	case (node == nil || node.Status == state.NodeDown) && pl.State != state.PlacementFailed:
		pv.State, pv.Reported = string(placementUnknown), string(pl.State)
		pv.Reason = "node is down"
		if node != nil && node.StatusReason != "" {
			pv.Reason += ": " + node.StatusReason
		}
	case pl.State == state.PlacementReady:
		pv.Ready = true
	case pl.State == state.PlacementPulling:
		pct := math.Round(pl.Progress*1000) / 10
		pv.ProgressPercent, pv.Progress = &pct, fmt.Sprintf("%.1f%%", pct)
		pv.BytesDone, pv.BytesTotal = pl.BytesDone, pl.BytesTotal
	}
	return pv
}

// placementUnknown is the state shown for a replica on a down node.
const placementUnknown state.PlacementState = "unknown"

// describe says in a few words why a replica is not ready.
func describe(pv wire.Placement) string {
	s := pv.State
	if pv.Progress != "" {
		s += " " + pv.Progress
	}
	if pv.Reason != "" {
		s += " (" + pv.Reason + ")"
	}
	return s
}

// readiness turns a placement verdict of ok into one a person can trust:
// ok only when as many replicas are ready as wanted.
func readiness(v *wire.Deployment) {
	if v.Status != string(scheduler.StatusOK) || v.ReadyReplicas >= v.Replicas {
		return
	}
	v.Status = string(StatusUnavailable)
	if v.ReadyReplicas > 0 {
		v.Status = string(StatusDegraded)
	}
	var why []string
	for _, p := range v.Placements {
		if !p.Ready {
			why = append(why, p.Node+": "+describe(p))
		}
	}
	if n := v.Replicas - len(v.Placements); n > 0 {
		why = append(why, fmt.Sprintf("%d being placed", n))
	}
	v.Reason = fmt.Sprintf("%d of %d replicas ready: %s", v.ReadyReplicas, v.Replicas, strings.Join(why, "; "))
}
