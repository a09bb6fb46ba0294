package scheduler

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/sovra/sovra/cluster/state"
)

// Plan is the outcome of a run: for every deployment the nodes that should
// hold its replicas and the GPU memory each reserves, and what leaves.
// The leader re-checks it (Verify) and commits it.
type Plan struct {
	// Index is the state index the plan was computed from.
	Index uint64 `json:"index"`
	// Deployments are sorted by name.
	Deployments []DeploymentPlan `json:"deployments"`
	// Evictions are replicas removed to make room for a deployment of a
	// higher priority, sorted by deployment then node.
	Evictions []Eviction `json:"evictions,omitempty"`
	// Removals are the other replicas that leave, same order.
	Removals []Removal `json:"removals,omitempty"`
}

// Status sums up how far a deployment is placed.
type Status string

// Deployment statuses.
const (
	StatusOK          Status = "ok"          // every replica placed
	StatusPartial     Status = "partial"     // some replicas placed, not all
	StatusUnplaceable Status = "unplaceable" // replicas wanted, none placed
	StatusInvalid     Status = "invalid"     // unknown model or bad constraint: nothing changed
	StatusIdle        Status = "idle"        // unused past its idle timeout: no replicas until a request wakes it
)

// ReasonFiguresUnknown begins the reason of a deployment whose model is
// neither in the catalog nor registered in the state: it is invalid until
// an operator registers the model or a node reads its figures from Ollama.
const ReasonFiguresUnknown = "model figures unknown"

// FiguresUnknown is the reason of a deployment of model whose figures are
// unknown.
func FiguresUnknown(model string) string {
	return fmt.Sprintf("%s: %q is neither built in nor registered; sovra reads them from Ollama once a node has the model", ReasonFiguresUnknown, model)
}

// DeploymentPlan is the target of one deployment.
type DeploymentPlan struct {
	Name     string `json:"name"`
	Model    string `json:"model"`
	Version  uint64 `json:"version"`
	Priority int    `json:"priority,omitempty"`
	Replicas int    `json:"replicas"`
	// Idle is set when the deployment is idle: it wants no replicas.
	Idle bool `json:"idle,omitempty"`
	// Placements are the nodes that should hold a replica, sorted by
	// node. Replicas draining from a leaving node are among them.
	Placements []Assignment `json:"placements,omitempty"`
	Status     Status       `json:"status"`
	// Reason explains a status other than ok, or an ok one that is still
	// moving replicas off leaving nodes.
	Reason string `json:"reason,omitempty"`
}

// Action says what happens to a placement.
type Action string

// Actions.
const (
	// ActionKeep: the replica is in the state and stays.
	ActionKeep Action = "keep"
	// ActionPlace: a new replica.
	ActionPlace Action = "place"
	// ActionDrain: the replica is on a cordoned or draining node and stays
	// until enough replicas elsewhere are ready (make-before-break); a
	// later run removes it then.
	ActionDrain Action = "drain"
)

// Assignment is one replica on one node.
type Assignment struct {
	Node   string `json:"node"`
	Action Action `json:"action"`
	// GPUs is the memory the replica reserves, by GPU index.
	GPUs   []GPUReservation `json:"gpus,omitempty"`
	Reason string           `json:"reason,omitempty"`
}

// GPUReservation is memory a replica reserves on one GPU of its node.
type GPUReservation struct {
	Index int    `json:"index"` // the GPU's state.GPU.Index
	Bytes uint64 `json:"bytes"`
}

// Bytes is the memory the replica reserves over all its GPUs.
func (a Assignment) Bytes() uint64 {
	var b uint64
	for _, g := range a.GPUs {
		b += g.Bytes
	}
	return b
}

// Cause says why a replica leaves.
type Cause string

// Causes of a removal.
const (
	CauseScaleDown  Cause = "scale-down" // more replicas than wanted
	CauseIdle       Cause = "idle"       // the deployment went idle
	CauseDrained    Cause = "drained"    // its node is leaving and enough replicas elsewhere are ready
	CauseNodeLost   Cause = "node-lost"  // its node has been down past the grace, or is gone
	CauseInfeasible Cause = "infeasible" // a constraint no longer holds, or it no longer fits
)

// Removal is a replica that leaves for a reason of its own deployment or
// node.
type Removal struct {
	Deployment string `json:"deployment"`
	Node       string `json:"node"`
	Cause      Cause  `json:"cause"`
	Reason     string `json:"reason"`
}

// Eviction is a replica removed to make room for a deployment of a
// strictly higher priority.
type Eviction struct {
	Deployment string `json:"deployment"`
	Node       string `json:"node"`
	Priority   int    `json:"priority"`
	By         string `json:"by"`
	ByPriority int    `json:"by_priority"`
	Reason     string `json:"reason"`
}

// Deployment returns the plan of one deployment, or nil.
func (p *Plan) Deployment(name string) *DeploymentPlan {
	i, ok := slices.BinarySearchFunc(p.Deployments, name, func(d DeploymentPlan, n string) int { return cmp.Compare(d.Name, n) })
	if !ok {
		return nil
	}
	return &p.Deployments[i]
}

// Nodes returns the nodes of the deployment's placements.
func (d *DeploymentPlan) Nodes() []string {
	out := make([]string, len(d.Placements))
	for i, a := range d.Placements {
		out[i] = a.Node
	}
	return out
}

// Placement returns the deployment's assignment on a node, or nil.
func (d *DeploymentPlan) Placement(node string) *Assignment {
	for i := range d.Placements {
		if d.Placements[i].Node == node {
			return &d.Placements[i]
		}
	}
	return nil
}

// Changes counts what the plan changes: replicas placed, removed and
// evicted.
func (p *Plan) Changes() int {
	n := len(p.Evictions) + len(p.Removals)
	for _, d := range p.Deployments {
		for _, a := range d.Placements {
			if a.Action == ActionPlace {
				n++
			}
		}
	}
	return n
}

// SetPlacements returns the command that commits the plan: the node sets
// of the deployments it changes.
func (p *Plan) SetPlacements() state.SetPlacements {
	changed := map[string]bool{}
	for _, e := range p.Evictions {
		changed[e.Deployment] = true
	}
	for _, r := range p.Removals {
		changed[r.Deployment] = true
	}
	out := state.SetPlacements{Deployments: map[string][]string{}}
	for _, d := range p.Deployments {
		for _, a := range d.Placements {
			if a.Action == ActionPlace {
				changed[d.Name] = true
			}
		}
		if changed[d.Name] {
			out.Deployments[d.Name] = d.Nodes()
		}
	}
	return out
}
