package scheduler

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sovra/sovra/cluster/state"
)

// ErrUnknownDeployment is set, wrapped, in the Err of an Explanation of a
// deployment the state does not hold.
var ErrUnknownDeployment = errors.New("scheduler: no such deployment")

// Explanation says, for one deployment, what the run made of every node:
// why the filters rejected it, or how the rankers scored it. Nodes are
// judged as they stood when the run came to the deployment, with the
// replicas of higher-priority deployments already placed.
type Explanation struct {
	Deployment  string `json:"deployment"`
	Model       string `json:"model,omitempty"`
	Constraints string `json:"constraints,omitempty"`
	// Need is what a replica reserves on a GPU that holds it whole.
	Need   uint64            `json:"need,omitempty"`
	Status Status            `json:"status,omitempty"`
	Reason string            `json:"reason,omitempty"`
	Nodes  []NodeExplanation `json:"nodes,omitempty"`
	// Err is set when there is nothing to explain: it wraps
	// ErrUnknownDeployment.
	Err error `json:"-"`
}

// Verdict is what the run made of a node for a deployment.
type Verdict string

// Verdicts.
const (
	VerdictRejected Verdict = "rejected" // a filter rejected it
	VerdictFeasible Verdict = "feasible" // it could take a replica; another node was chosen or none was needed
	VerdictPlaced   Verdict = "placed"   // the run placed a replica on it
	VerdictHolds    Verdict = "holds"    // it already held a replica
)

// NodeExplanation is the verdict on one node.
type NodeExplanation struct {
	Node    string  `json:"node"`
	Verdict Verdict `json:"verdict"`
	// Filter and Reason say which filter rejected the node and why; for
	// a node that holds a replica, Reason describes the replica.
	Filter string `json:"filter,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Score is the weighted sum of Scores.
	Score  float64 `json:"score,omitempty"`
	Scores []Score `json:"scores,omitempty"`
	// GPUs is what a replica reserves, or would, on the node.
	GPUs []GPUReservation `json:"gpus,omitempty"`
	// Free is the node's free VRAM at the time, headroom taken off.
	Free uint64 `json:"free"`
}

// Score is one ranker's score of a node.
type Score struct {
	Ranker string  `json:"ranker"`
	Weight float64 `json:"weight"`
	Value  float64 `json:"value"`
}

// Explain runs the scheduler over the snapshot and reports what it made of
// every node for one deployment.
func Explain(snapshot *state.State, deployment string, opts Options) Explanation {
	r := newRun(snapshot, opts)
	r.explain = deployment
	j := r.byName[deployment]
	if j == nil {
		err := fmt.Errorf("%w: %q", ErrUnknownDeployment, deployment)
		return Explanation{Deployment: deployment, Reason: err.Error(), Err: err}
	}
	r.admit()
	r.place()
	plan := r.plan()
	dp := plan.Deployment(deployment)
	e := Explanation{Deployment: deployment, Model: j.d.Model, Constraints: j.elig.text, Need: j.need(), Status: dp.Status, Reason: dp.Reason, Nodes: r.captured}
	if !j.valid() {
		e.Nodes = r.explainHolders(j)
	}
	for i := range e.Nodes {
		if a := dp.Placement(e.Nodes[i].Node); a != nil && a.Action == ActionPlace {
			e.Nodes[i].Verdict, e.Nodes[i].GPUs = VerdictPlaced, a.GPUs
		}
	}
	return e
}

// explainNodes judges every node for a replica of j as things stand.
func (r *run) explainNodes(j *job) []NodeExplanation {
	out := make([]NodeExplanation, 0, len(r.nodes))
	for _, n := range r.nodes {
		out = append(out, r.explainNode(j, n))
	}
	return out
}

func (r *run) explainNode(j *job, n *nodeView) NodeExplanation {
	ne := NodeExplanation{Node: n.n.ID, Free: n.freeTotal}
	if s := j.slotOn(n); s != nil {
		return holding(ne, s)
	}
	c := check{r: r, j: j, n: n}
	for _, fs := range [][]filter{r.static, r.dynamic} {
		for _, f := range fs {
			if why := f.fn(&c); why != "" {
				ne.Verdict, ne.Filter, ne.Reason = VerdictRejected, f.name, why
				return ne
			}
		}
	}
	ne.Verdict, ne.GPUs = VerdictFeasible, assignment(&slot{job: j, node: n, shares: c.shares}).GPUs
	for _, rk := range r.rankers {
		if r.skip(rk, &c) {
			continue
		}
		v := rk.fn(&c)
		ne.Scores = append(ne.Scores, Score{Ranker: rk.name, Weight: rk.weight, Value: v})
		ne.Score += rk.weight * v
	}
	return ne
}

// holding describes a node that holds a replica.
func holding(ne NodeExplanation, s *slot) NodeExplanation {
	ne.Verdict, ne.GPUs = VerdictHolds, assignment(s).GPUs
	st := "placed by this run"
	if s.placed != nil {
		st = string(s.placed.State)
	}
	ne.Reason = "holds a replica (" + st + ")"
	if s.node.health == downGrace {
		ne.Reason += "; not serving: " + s.node.why
	}
	if s.drain {
		ne.Reason += "; " + s.reason
	}
	return ne
}

// explainHolders lists the nodes that hold replicas of a deployment the
// run cannot schedule.
func (r *run) explainHolders(j *job) []NodeExplanation {
	var out []NodeExplanation
	for _, s := range j.sortedSlots() {
		out = append(out, holding(NodeExplanation{Node: s.node.n.ID, Free: s.node.freeTotal}, s))
	}
	return out
}

// String renders the explanation for a terminal, one node a line.
func (e Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "deployment %s", e.Deployment)
	if e.Model != "" {
		fmt.Fprintf(&b, " (%s, needs %s", e.Model, gib(e.Need))
		if e.Constraints != "" {
			fmt.Fprintf(&b, ", %s", e.Constraints)
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, ": %s", e.Status)
	if e.Reason != "" {
		fmt.Fprintf(&b, ": %s", e.Reason)
	}
	b.WriteString("\n")
	for _, n := range e.Nodes {
		fmt.Fprintf(&b, "  %-20s %-8s ", n.Node, n.Verdict)
		switch n.Verdict {
		case VerdictRejected:
			fmt.Fprintf(&b, "%s: %s", n.Filter, n.Reason)
		case VerdictHolds:
			b.WriteString(n.Reason)
		default:
			fmt.Fprintf(&b, "score %.3f", n.Score)
			for _, s := range n.Scores {
				fmt.Fprintf(&b, " %s=%.3f", s.Ranker, s.Value)
			}
		}
		fmt.Fprintf(&b, " [free %s]\n", gib(n.Free))
	}
	return b.String()
}
