package router

import (
	"sort"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/router/load"
)

// ReplicaView is what this node's router knows of one replica: the
// inputs of its choices, for operators.
type ReplicaView struct {
	Deployment   string  `json:"deployment"`
	Model        string  `json:"model"`
	Node         string  `json:"node"`
	Local        bool    `json:"local"`
	Health       string  `json:"health"`
	ReportAgeMs  float64 `json:"report_age_ms"`
	Running      int     `json:"running"`
	Queued       int     `json:"queued"`
	Pending      int     `json:"pending"`
	Outstanding  int     `json:"outstanding"`
	Slots        int     `json:"slots"`
	TTFTMs       float64 `json:"ttft_ms"`
	TokensPerSec float64 `json:"tokens_per_sec"`
	OutTokens    float64 `json:"out_tokens"`
	// PrefillMsPerKiB and PromptKiB are the measured cost of an uncached
	// KiB of prompt and the average uncached prompt; ArrivalsPerSec the
	// replica's rate of requests, as its node reported them.
	PrefillMsPerKiB float64 `json:"prefill_ms_per_kib"`
	PromptKiB       float64 `json:"prompt_kib"`
	ArrivalsPerSec  float64 `json:"arrivals_per_sec"`
	// Breaker is the replica's circuit breaker: closed, half-open or open.
	Breaker string `json:"breaker"`
}

// Replicas lists the ready replicas of every deployment with the load
// and breaker state this node routes by, sorted by deployment and node.
func (r *Router) Replicas() []ReplicaView {
	if r.state == nil {
		return nil
	}
	type replica struct{ dep, tag, node string }
	var reps []replica
	r.state.Read(func(s *state.State) {
		for _, p := range s.Placements {
			n, ok := s.Nodes[p.Node]
			d, dok := s.Deployments[p.Deployment]
			if ok && dok && p.State == state.PlacementReady && n.Status == state.NodeReady {
				reps = append(reps, replica{dep: d.Name, tag: normalize(d.Model), node: n.ID})
			}
		}
	})
	out := make([]ReplicaView, 0, len(reps))
	for _, rp := range reps {
		var l load.Load
		if rp.node == r.self {
			l = r.localLoad(rp.tag)
		} else {
			l = r.cfg.View.Load(rp.node, rp.tag)
		}
		out = append(out, ReplicaView{
			Deployment: rp.dep, Model: rp.tag, Node: rp.node, Local: rp.node == r.self,
			Health: l.Health.String(), ReportAgeMs: float64(l.Age.Microseconds()) / 1000,
			Running: l.Running, Queued: l.Queued, Pending: l.Pending, Outstanding: l.Outstanding, Slots: l.Slots,
			TTFTMs: l.TTFTMs, TokensPerSec: l.TokensPerSec, OutTokens: l.OutTokens,
			PrefillMsPerKiB: l.PrefillMsPerKiB, PromptKiB: l.PromptKiB, ArrivalsPerSec: l.ArrivalsPerSec,
			Breaker: r.breakers.get(rp.node, rp.tag).State().String(),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Deployment != out[j].Deployment {
			return out[i].Deployment < out[j].Deployment
		}
		return out[i].Node < out[j].Node
	})
	return out
}

// PolicyName is the routing policy in use.
func (r *Router) PolicyName() string { return string(r.cfg.Policy) }

// PeerUnhealthy reports whether this node has had no load report from
// node for longer than the view's DownAfter: its replicas are not
// routed to while others serve, and the admin views call them not ready.
func (r *Router) PeerUnhealthy(node string) bool {
	return node != r.self && r.cfg.View != nil && r.cfg.View.Health(node) == load.Unhealthy
}
