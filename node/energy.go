package node

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ratelog"
	"github.com/sovra/sovra/internal/ticker"
	"github.com/sovra/sovra/node/agent"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/energy"
	"github.com/sovra/sovra/scheduler"
)

// EnergyConfig configures energy accounting (package node/energy): a
// node in a cluster reads its GPUs' power every Interval and attributes
// the energy to the output tokens of the models it serves. Zero fields
// take the defaults.
type EnergyConfig struct {
	// Interval between GPU readings (energy.DefaultInterval); negative
	// turns energy accounting off.
	Interval time.Duration
	// Window is the span of the joules-per-token gauges
	// (energy.DefaultWindow).
	Window time.Duration
	// Runner runs nvidia-smi (tests give recorded outputs); nil runs it.
	Runner agent.CommandRunner
	// Ticks, when set, replaces the ticker made from Interval (tests).
	Ticks <-chan time.Time
}

func (c EnergyConfig) enabled() bool { return c.Interval >= 0 }

// localBackend is the backend the router serves from here: the node's
// own, counting its output tokens for the energy sampler in a cluster
// with energy accounting on (it registers the sampler's metrics in reg).
func (n *Node) localBackend(reg prometheus.Registerer) backend.Backend {
	ec := n.cfg.Energy
	if n.cluster == nil || !ec.enabled() {
		return n.be
	}
	n.energy = energy.New(energy.Config{Node: n.cfg.NodeID, Runner: ec.Runner, Interval: ec.Interval, Window: ec.Window, Ticks: ec.Ticks,
		GPUNames: n.gpuNames, Layout: n.energyLayout,
		OnError: n.energyFailed()})
	reg.MustRegister(n.energy.Collector())
	return energy.Counting(n.be, n.energy.AddTokens)
}

// energyFailed logs failed readings of the GPUs, at most one line per
// ten minutes, so that a broken driver does not log every interval.
func (n *Node) energyFailed() func(error) {
	limit := &ratelog.Limiter{Every: 10 * time.Minute}
	return func(err error) {
		if ok, more := limit.Allow("read"); ok {
			n.log.Warn("could not read the GPUs' power; the interval is counted with the next", zap.Error(err),
				zap.Int("failures_not_logged", more))
		}
	}
}

// runEnergy samples the GPUs and writes the energy buckets with the usage.
func (n *Node) runEnergy(ctx context.Context) {
	if n.energy == nil {
		return
	}
	n.runWG.Add(2)
	go func() {
		defer n.runWG.Done()
		_ = n.energy.Run(ctx)
	}()
	go func() {
		defer n.runWG.Done()
		ticker.Every(ctx, n.cfg.Usage.withDefaults().Flush, n.flushEnergy)
	}()
}

func (n *Node) flushEnergy(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.FlushEnergy(ctx); err != nil && ctx.Err() == nil {
		n.log.Warn("could not write the energy batch; it is retried", zap.Error(err))
	}
}

// FlushEnergy writes this node's energy batch now (tests, shutdown).
func (n *Node) FlushEnergy(ctx context.Context) error {
	if n.energy == nil {
		return nil
	}
	return n.energy.Flush(ctx, n.cluster.Apply)
}

// Energy is the node's energy sampler, or nil when it has none (outside a
// cluster, or turned off).
func (n *Node) Energy() *energy.Sampler { return n.energy }

// gpuNames are this node's GPU names by index, as registered.
func (n *Node) gpuNames() map[int]string {
	out := map[int]string{}
	n.cluster.Machine().Read(func(s *state.State) {
		if self := s.Nodes[n.cfg.NodeID]; self != nil {
			for _, g := range self.GPUs {
				out[g.Index] = g.Model
			}
		}
	})
	return out
}

// energyLayout is the GPUs each model's replica uses on this node, by
// model tag (layoutOf).
func (n *Node) energyLayout() map[string][]int {
	var part *state.State
	n.cluster.Machine().Read(func(s *state.State) { part = nodePart(s, n.cfg.NodeID) })
	return layoutOf(part, n.cfg.NodeID, n.cluster.SchedulerOptions())
}

// layoutOf is the GPUs each model's replica uses on node self, by model
// tag: the scheduler's layout account (Ollama does not say where it put
// a model). The layout is a function of the node and its replicas, so
// the node's part of the state (nodePart) gives the same one as the
// whole state, for a fraction of the work.
func layoutOf(part *state.State, self string, opts scheduler.Options) map[string][]int {
	if part == nil || len(part.Placements) == 0 {
		return nil
	}
	plan := scheduler.Schedule(part, opts)
	out := map[string][]int{}
	for _, dp := range plan.Deployments {
		a := dp.Placement(self)
		if a == nil || len(a.GPUs) == 0 {
			continue
		}
		tag := part.Deployments[dp.Name].Model
		for _, g := range a.GPUs {
			if !slices.Contains(out[tag], g.Index) {
				out[tag] = append(out[tag], g.Index)
			}
		}
	}
	return out
}

// nodePart copies what the layout of one node depends on: the node, its
// placements, their deployments and the registered models (nil when the
// node is not a member).
func nodePart(s *state.State, id string) *state.State {
	self := s.Nodes[id]
	if self == nil {
		return nil
	}
	part := state.New()
	node := *self
	node.Labels, node.GPUs, node.Models = maps.Clone(self.Labels), slices.Clone(self.GPUs), slices.Clone(self.Models)
	part.Nodes[id] = &node
	for k, p := range s.Placements {
		d := s.Deployments[p.Deployment]
		if p.Node != id || d == nil {
			continue
		}
		pc, dc := *p, *d
		dc.Constraints = slices.Clone(d.Constraints)
		part.Placements[k], part.Deployments[d.Name] = &pc, &dc
	}
	for k, m := range s.Models {
		mc := *m
		part.Models[k] = &mc
	}
	return part
}
