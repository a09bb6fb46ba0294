package scheduler

import (
	"errors"
	"fmt"

	"github.com/sovra/sovra/cluster/state"
)

// Errors of Verify, wrapped with the detail.
var (
	// ErrStale: the state moved under the plan (a deployment or node
	// changed, appeared or went); schedule again.
	ErrStale = errors.New("scheduler: plan is stale")
	// ErrInfeasible: the plan breaks a rule against the state: a GPU
	// over-committed, a constraint that fails, a replica twice on a node.
	ErrInfeasible = errors.New("scheduler: plan is infeasible")
)

// Verify re-checks a plan against a state, which may be newer than the
// one the plan was computed from: the leader calls it before it commits a
// plan, and the tests hold every plan to it. It checks that the plan
// covers exactly the state's deployments at the versions it saw, that new
// replicas go to ready nodes, that every constraint holds, that no node
// holds two replicas of a deployment and that no GPU is reserved beyond
// its memory less the headroom.
func Verify(snapshot *state.State, p Plan, opts Options) error {
	if len(p.Deployments) != len(snapshot.Deployments) {
		return fmt.Errorf("%w: plan has %d deployments, state %d", ErrStale, len(p.Deployments), len(snapshot.Deployments))
	}
	used := map[string]map[int]uint64{} // node -> GPU index -> bytes
	for _, dp := range p.Deployments {
		if err := verifyDeployment(snapshot, dp, used); err != nil {
			return err
		}
	}
	for _, n := range snapshot.NodeList() {
		for _, g := range n.GPUs {
			limit := g.MemoryBytes - min(g.MemoryBytes, opts.Headroom)
			if b := used[n.ID][g.Index]; b > limit {
				return fmt.Errorf("%w: GPU %d of node %s over-committed: %s reserved of %s", ErrInfeasible, g.Index, n.ID, gib(b), gib(limit))
			}
		}
	}
	return nil
}

func verifyDeployment(snapshot *state.State, dp DeploymentPlan, used map[string]map[int]uint64) error {
	d := snapshot.Deployments[dp.Name]
	switch {
	case d == nil:
		return fmt.Errorf("%w: deployment %q is gone", ErrStale, dp.Name)
	case d.Version != dp.Version:
		return fmt.Errorf("%w: deployment %q is at version %d, the plan saw %d", ErrStale, dp.Name, d.Version, dp.Version)
	case d.Idle != dp.Idle:
		return fmt.Errorf("%w: deployment %q changed idleness", ErrStale, dp.Name)
	}
	cons, err := ParseConstraints(d.Constraints)
	checkRules := dp.Status != StatusInvalid
	if checkRules && err != nil {
		return fmt.Errorf("%w: deployment %q: %v", ErrInfeasible, dp.Name, err)
	}
	seen := map[string]bool{}
	for _, a := range dp.Placements {
		n := snapshot.Nodes[a.Node]
		switch {
		case n == nil:
			return fmt.Errorf("%w: node %q of deployment %q is gone", ErrStale, a.Node, dp.Name)
		case seen[a.Node]:
			return fmt.Errorf("%w: deployment %q twice on node %q", ErrInfeasible, dp.Name, a.Node)
		case a.Action == ActionPlace && n.Status != state.NodeReady:
			return fmt.Errorf("%w: new replica of %q on node %q, which is %s", ErrStale, dp.Name, a.Node, n.Status)
		}
		seen[a.Node] = true
		if checkRules {
			if err := verifyAssignment(n, cons, dp.Name, a); err != nil {
				return err
			}
		}
		if used[a.Node] == nil {
			used[a.Node] = map[int]uint64{}
		}
		for _, g := range a.GPUs {
			used[a.Node][g.Index] += g.Bytes
		}
	}
	return nil
}

// verifyAssignment checks one replica against its node.
func verifyAssignment(n *state.Node, cons Constraints, name string, a Assignment) error {
	if why := cons.MatchLabels(n.Labels); why != "" {
		return fmt.Errorf("%w: deployment %q on node %q: %s", ErrInfeasible, name, a.Node, why)
	}
	if len(a.GPUs) == 0 {
		return fmt.Errorf("%w: deployment %q on node %q reserves no GPU", ErrInfeasible, name, a.Node)
	}
	for _, r := range a.GPUs {
		g, ok := gpuByIndex(n, r.Index)
		switch {
		case !ok:
			return fmt.Errorf("%w: deployment %q on node %q reserves GPU %d, which the node lacks", ErrInfeasible, name, a.Node, r.Index)
		case !cons.MatchGPU(g.Model):
			return fmt.Errorf("%w: deployment %q on node %q uses GPU %d (%s) against its GPU constraints", ErrInfeasible, name, a.Node, r.Index, g.Model)
		}
	}
	return nil
}

func gpuByIndex(n *state.Node, index int) (state.GPU, bool) {
	for _, g := range n.GPUs {
		if g.Index == index {
			return g, true
		}
	}
	return state.GPU{}, false
}
