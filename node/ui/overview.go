package ui

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/sovra/sovra/client"
)

// overviewView is the overview page's data.
type overviewView struct {
	Status      *client.ClusterStatus
	Stale       bool
	Problems    []problem
	Members     []client.Member
	GPUs        []gpuRow
	Deployments []client.Deployment
}

// problem is one thing wrong, with the page that tells more.
type problem struct {
	Tone, Text, Link string
}

// gpuRow is one GPU with the memory the scheduler has reserved on it for
// the replicas it holds.
type gpuRow struct {
	Node, NodeStatus string
	client.GPU
	Reserved, Free uint64
}

func (u *UI) overview(r *req) (view, error) {
	st, ctx, stale, err := clusterRead(r)
	if err != nil {
		return view{}, err
	}
	nodes, err := r.ac.Nodes(ctx)
	if err != nil {
		return view{}, err
	}
	deps, err := r.ac.Deployments(ctx)
	if err != nil {
		return view{}, err
	}
	reserved, err := reservations(ctx, r.ac, deps)
	if err != nil {
		return view{}, err
	}
	v := overviewView{Status: st, Stale: stale, Members: membersFirstBad(st.Members), GPUs: gpuRows(nodes, reserved),
		Deployments: deploymentsFirstBad(deps)}
	v.Problems = problems(st, nodes, v.Deployments)
	return view{name: "overview", title: "Overview", nav: "overview", tick: true, data: v}, nil
}

// clusterRead reads the cluster's status and returns the context of the
// page's other reads: linearizable while the cluster has a leader, else
// from this node's copy of the state (stale).
func clusterRead(r *req) (*client.ClusterStatus, context.Context, bool, error) {
	st, err := r.ac.ClusterStatus(r.ctx)
	if err != nil {
		return nil, nil, false, err
	}
	if st.Leader == "" {
		return st, client.Stale(r.ctx), true, nil
	}
	return st, r.ctx, false, nil
}

// reservations sums, per node and GPU index, the memory that the
// replicas each node holds reserve, as the scheduler explains them.
func reservations(ctx context.Context, ac *client.Client, deps []client.Deployment) (map[string]map[int]uint64, error) {
	out := map[string]map[int]uint64{}
	for _, d := range deps {
		if len(d.Placements) == 0 {
			continue
		}
		e, err := ac.Explain(ctx, d.Name)
		if errors.Is(err, client.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		for _, n := range e.Nodes {
			if n.Verdict != "holds" {
				continue
			}
			if out[n.Node] == nil {
				out[n.Node] = map[int]uint64{}
			}
			for _, g := range n.GPUs {
				out[n.Node][g.Index] += g.Bytes
			}
		}
	}
	return out, nil
}

func gpuRows(nodes []client.Node, reserved map[string]map[int]uint64) []gpuRow {
	var out []gpuRow
	for _, n := range sortedNodes(nodes) {
		for _, g := range n.GPUs {
			res := reserved[n.ID][g.Index]
			row := gpuRow{Node: n.ID, NodeStatus: n.Status, GPU: g, Reserved: res}
			if res < g.MemoryBytes {
				row.Free = g.MemoryBytes - res
			}
			out = append(out, row)
		}
	}
	return out
}

// sortedNodes orders nodes: not ready first, then by id.
func sortedNodes(nodes []client.Node) []client.Node {
	out := slices.Clone(nodes)
	slices.SortStableFunc(out, func(a, b client.Node) int {
		return cmp.Or(cmp.Compare(statusRank(a.Status), statusRank(b.Status)), strings.Compare(a.ID, b.ID))
	})
	return out
}

func statusRank(s string) int {
	switch s {
	case client.NodeReady:
		return 3
	case client.NodeCordoned, client.NodeDraining:
		return 1
	}
	return 0
}

// membersFirstBad orders members: not ready first, then by id.
func membersFirstBad(ms []client.Member) []client.Member {
	out := slices.Clone(ms)
	slices.SortStableFunc(out, func(a, b client.Member) int {
		return cmp.Or(cmp.Compare(statusRank(a.Status), statusRank(b.Status)), strings.Compare(a.ID, b.ID))
	})
	return out
}

// deploymentsFirstBad orders deployments: troubled first, then by name.
func deploymentsFirstBad(ds []client.Deployment) []client.Deployment {
	out := slices.Clone(ds)
	slices.SortStableFunc(out, func(a, b client.Deployment) int {
		return cmp.Or(cmp.Compare(a.Rank(), b.Rank()), strings.Compare(a.Name, b.Name))
	})
	return out
}

// problems lists what needs an operator's eye, the worst first.
func problems(st *client.ClusterStatus, nodes []client.Node, deps []client.Deployment) []problem {
	var out []problem
	if st.Leader == "" {
		text := "The cluster has no leader: nothing can change, and this page shows this node's copy of the state."
		if st.Warning != "" {
			text += " " + st.Warning
		}
		out = append(out, problem{Tone: "bad", Text: text})
	}
	for _, m := range membersFirstBad(st.Members) {
		if m.Status != client.NodeReady && m.Status != client.NodeCordoned && m.Status != client.NodeDraining {
			out = append(out, problem{Tone: tone(m.Status), Text: "Node " + m.ID + " is " + m.Status + ".", Link: nodeLink(m.ID)})
		}
	}
	for _, n := range sortedNodes(nodes) {
		if n.Status == client.NodeCordoned || n.Status == client.NodeDraining {
			text := "Node " + n.ID + " is " + n.Status
			if n.StatusReason != "" {
				text += ": " + n.StatusReason
			}
			out = append(out, problem{Tone: "warn", Text: text + ".", Link: nodeLink(n.ID)})
		}
	}
	for _, d := range deps {
		if d.Rank() >= 3 {
			continue
		}
		text := "Deployment " + d.Name + " is " + d.Status
		if d.Reason != "" {
			text += ": " + d.Reason
		}
		out = append(out, problem{Tone: tone(d.Status), Text: text + ".", Link: deploymentLink(d.Name)})
	}
	return out
}
