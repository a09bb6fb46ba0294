package router

import (
	"math"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/router/load"
)

// Exchange is what a node sends a peer that asks for its load: its load
// report and the conversation prefixes its Ollama served since the
// sequence number the peer gave.
type Exchange struct {
	load.Report
	Prefixes  []uint64 `json:"prefixes,omitempty"`
	PrefixSeq uint64   `json:"prefix_seq"`
}

// Report is this node's load by model (Ollama tag), as peers see it.
func (r *Router) Report() load.Report {
	return load.Report{Node: r.self, Seq: r.seq.Add(1), Models: r.models()}
}

// models is this node's load by model: the models with an admission
// queue and those ready here.
func (r *Router) models() map[string]load.Model {
	models := map[string]load.Model{}
	now := time.Now()
	for name, st := range r.queues.Stats() {
		if name == "" {
			continue
		}
		m := r.tracker.Get(name)
		m.Running, m.Queued, m.Slots = st.Running, st.Queued, st.Slots
		m.ArrivalsPerSec = reportedRate(r.arrivals.rate(name, now))
		models[name] = m
	}
	for _, tag := range r.readyHere() {
		if _, ok := models[tag]; !ok {
			m := r.tracker.Get(tag)
			m.Slots = r.cfg.Slots
			models[tag] = m
		}
	}
	return models
}

// rateStep is the resolution of the arrival rate in a report, per
// second: finer than any rate the balancer weighs, coarse enough that the
// decaying meter of a model that stopped getting requests reaches 0 within
// seconds, and a quiet node's report stops changing (a changed report is
// a frame to every peer).
const rateStep = 0.1

// reportedRate is rate rounded to rateStep.
func reportedRate(rate float64) float64 {
	return math.Round(rate/rateStep) * rateStep
}

// Exchange is this node's answer to a peer that last saw prefix sequence
// number after.
func (r *Router) Exchange(after uint64) Exchange {
	keys, next := r.bal.Affinity().Recent(after)
	return Exchange{Report: r.Report(), Prefixes: keys, PrefixSeq: next}
}

// Learn takes in the conversation prefixes a peer's Ollama served, so
// follow-ups entering here find that replica.
func (r *Router) Learn(node string, prefixes []uint64) {
	r.bal.Affinity().Merge(node, prefixes)
}

// readyHere are the tags of the replicas ready on this node.
func (r *Router) readyHere() []string {
	if r.state == nil {
		return nil
	}
	var tags []string
	r.state.Read(func(s *state.State) {
		for _, p := range s.Placements {
			if p.Node != r.self || p.State != state.PlacementReady {
				continue
			}
			if d, ok := s.Deployments[p.Deployment]; ok {
				tags = append(tags, normalize(d.Model))
			}
		}
	})
	return tags
}
