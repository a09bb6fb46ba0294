package scheduler

import (
	"fmt"
	"strings"
)

// check is one question of the form "may this replica go on this node":
// the filters answer it with a reason to reject, the rankers with scores.
type check struct {
	r *run
	j *job
	n *nodeView
	// quiet asks the filters for a verdict only: they reject with
	// the constant rejected instead of building a reason.
	quiet bool
	// need is what the replica would reserve on the node: exact once the
	// vram filter laid it out, a close guess in the fast path.
	need   uint64
	shares []share
}

// filter rejects a node for a replica with a reason, or passes it with "".
type filter struct {
	name string
	fn   func(*check) string
}

// Filter names, as Explain reports them.
const (
	FilterNodeReady = "node-ready"
	FilterLabels    = "labels"
	FilterGPUModel  = "gpu-model"
	FilterOnePer    = "one-per-node"
	FilterVRAM      = "vram"
)

// nodeReady rejects a node that is down, cordoned or draining.
func nodeReady(c *check) string {
	return c.n.why
}

// rejected is what a quiet filter rejects with.
const rejected = "rejected"

// labelsMatch rejects a node whose labels fail a constraint.
func labelsMatch(c *check) string {
	i := c.j.elig.cons.failing(c.n.n.Labels)
	switch {
	case i < 0:
		return ""
	case c.quiet:
		return rejected
	}
	return c.j.elig.cons.Labels[i].MatchLabels(c.n.n.Labels)
}

// gpuModelMatch rejects a node none of whose GPUs satisfy the gpu.model
// constraints.
func gpuModelMatch(c *check) string {
	if len(c.j.elig.cons.GPU) == 0 {
		return ""
	}
	if pos := c.j.gpusFor(c.n); len(pos) > 0 {
		return ""
	}
	if c.quiet {
		return rejected
	}
	var parts []string
	for _, g := range c.j.elig.cons.GPU {
		parts = append(parts, g.String())
	}
	return fmt.Sprintf("no GPU matches %s: node has %s", strings.Join(parts, ", "), describeGPUs(c.n, nil))
}

// onePerNode rejects a node that holds a replica of the deployment.
func onePerNode(c *check) string {
	if s := c.j.slotOn(c.n); s != nil {
		if s.drain {
			return "node holds a replica of the deployment (draining)"
		}
		return "node holds a replica of the deployment"
	}
	return ""
}

// vramFits rejects a node whose GPUs cannot hold the replica beside the
// ones it holds, laid out as Ollama would; it keeps the layout it found.
func vramFits(c *check) string {
	sh, ok := c.r.trial(newSlot(c.j, c.n), nil)
	if ok {
		c.shares, c.need = sh, sumShares(sh)
		return ""
	}
	return c.r.vramReason(c.j, c.n)
}

// vramReason says by how much the node's free memory falls short.
func (r *run) vramReason(j *job, n *nodeView) string {
	pos := j.gpusFor(n)
	free := n.free
	if pos != nil {
		free = make([]uint64, len(pos))
		for i, p := range pos {
			free[i] = n.free[p]
		}
	}
	if len(free) == 0 {
		return "node has no GPUs"
	}
	short, used := j.prof.shortfall(free)
	if short == 0 {
		// The model fits the free memory alone but not beside the
		// larger replicas laid out before it.
		return fmt.Sprintf("VRAM fits %s only if the node's other replicas moved", j.d.Model)
	}
	if used <= 1 {
		return fmt.Sprintf("VRAM short by %s on the best GPU (%s)", gib(short), describeGPUs(n, bestGPU(n, pos)))
	}
	return fmt.Sprintf("VRAM short by %s on the best split of %s", gib(short), describeGPUs(n, largest(n, pos, used)))
}

func sumShares(sh []share) uint64 {
	var b uint64
	for _, x := range sh {
		b += x.bytes
	}
	return b
}

// staticFilters are the filters whose answer does not change during a
// run; dynamicFilters the others. Explain runs both, in this order.
func staticFilters() []filter {
	return []filter{
		{FilterNodeReady, nodeReady},
		{FilterLabels, labelsMatch},
		{FilterGPUModel, gpuModelMatch},
	}
}

func dynamicFilters() []filter {
	return []filter{
		{FilterOnePer, onePerNode},
		{FilterVRAM, vramFits},
	}
}
