package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

// StatusView is `sovra status`: the node's view of the cluster, its nodes
// with their memory, its deployments, and what is wrong, worst first.
type StatusView struct {
	Cluster     client.ClusterStatus `json:"cluster"`
	Nodes       []NodeMemory         `json:"nodes"`
	Deployments []client.Deployment  `json:"deployments"`
	Problems    []string             `json:"problems"`
	// Stale is set when there was no leader to read through, or the node
	// cannot write its data directory: the nodes and deployments are the
	// answering node's own, possibly old, copy.
	Stale bool `json:"stale"`
}

// NodeMemory is a node with its GPU memory as the scheduler counts it:
// used is what its replicas and the scheduler's headroom reserve.
type NodeMemory struct {
	client.Node
	VRAMTotal uint64 `json:"vram_total"`
	VRAMUsed  uint64 `json:"vram_used"`
	VRAMFree  uint64 `json:"vram_free"`
	Replicas  int    `json:"replicas"`
}

func (g *globals) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster: leader, members, GPUs, deployments, problems first",
		Long: `Show the cluster as the node called sees it: the leader, the raft term and
applied index, every member with its status and version, each node's GPUs and
the memory its replicas reserve, every deployment with ready/desired replicas.
Problems (down nodes, unplaceable or degraded deployments, no leader) come first.
Without a leader it still answers, from the node's own copy of the state.`,
		Args: noArgs,
		RunE: g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
			v, err := g.status(ctx, cl)
			if err != nil {
				return err
			}
			return g.print(v, func(t *table) { g.statusTable(t, v) })
		}),
	}
}

// status gathers the view: a linearizable read, or the node's own copy
// when there is no leader.
func (g *globals) status(ctx context.Context, cl *client.Client) (*StatusView, error) {
	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		return nil, err
	}
	v := &StatusView{Cluster: *st}
	readCtx := ctx
	if st.Leader == "" {
		readCtx, v.Stale = client.Stale(ctx), true
	}
	nodes, err := cl.Nodes(readCtx)
	if ownCopyOnly(err) && !v.Stale {
		readCtx, v.Stale = client.Stale(ctx), true
		nodes, err = cl.Nodes(readCtx)
	}
	if err != nil {
		return nil, err
	}
	if v.Deployments, err = cl.Deployments(readCtx); err != nil {
		return nil, err
	}
	free, err := schedulerFree(readCtx, cl, v.Deployments)
	if err != nil {
		return nil, err
	}
	v.Nodes = nodeMemory(nodes, v.Deployments, free)
	v.Problems = problems(v)
	return v, nil
}

// ownCopyOnly reports an answer after which the node's own copy of the
// state is all it can show: there is no leader, or the node cannot write
// its data directory (its copy may be behind; the problems say why).
func ownCopyOnly(err error) bool {
	var ce *client.Error
	return errors.Is(err, client.ErrNoLeader) || errors.As(err, &ce) && ce.Code == "storage_unavailable"
}

// schedulerFree is the GPU memory the scheduler counts free on each
// node, from its explanation of any deployment (nil when there is none:
// then nothing is reserved).
func schedulerFree(ctx context.Context, cl *client.Client, deps []client.Deployment) (map[string]uint64, error) {
	if len(deps) == 0 {
		return nil, nil
	}
	e, err := cl.Explain(ctx, deps[0].Name)
	if err != nil {
		return nil, err
	}
	free := map[string]uint64{}
	for _, n := range e.Nodes {
		free[n.Node] = n.Free
	}
	return free, nil
}

// nodeMemory adds to each node its GPU memory, what the scheduler counts
// free of it (replicas and headroom reserve the rest) and its replicas.
func nodeMemory(nodes []client.Node, deps []client.Deployment, free map[string]uint64) []NodeMemory {
	count := map[string]int{}
	for _, d := range deps {
		for _, p := range d.Placements {
			count[p.Node]++
		}
	}
	out := make([]NodeMemory, 0, len(nodes))
	for _, n := range nodes {
		m := NodeMemory{Node: n, Replicas: count[n.ID]}
		for _, gpu := range n.GPUs {
			m.VRAMTotal += gpu.MemoryBytes
		}
		m.VRAMFree = m.VRAMTotal
		if f, ok := free[n.ID]; ok && f <= m.VRAMTotal {
			m.VRAMFree = f
		}
		m.VRAMUsed = m.VRAMTotal - m.VRAMFree
		out = append(out, m)
	}
	return out
}

// problems lists what is wrong, the worst first.
func problems(v *StatusView) []string {
	out := []string{}
	if v.Cluster.Leader == "" {
		p := "no leader"
		if v.Cluster.LastLeader != "" {
			p += " (last: " + v.Cluster.LastLeader + ")"
		}
		if v.Cluster.NoLeaderSince != nil {
			p += " since " + v.Cluster.NoLeaderSince.Format(time.RFC3339)
		}
		out = append(out, p+": the cluster has lost its majority; `sovra status` on each node shows who is reachable")
	}
	if v.Cluster.Warning != "" {
		out = append(out, v.Cluster.Warning)
	}
	for _, m := range v.Cluster.Members {
		if m.Status != client.NodeReady && m.Status != client.NodeCordoned && m.Status != client.NodeDraining {
			out = append(out, fmt.Sprintf("node %s is %s", m.ID, m.Status))
		}
	}
	for _, d := range v.Deployments {
		switch d.Status {
		case client.StatusOK, client.StatusIdle, "":
		default:
			out = append(out, fmt.Sprintf("deployment %s is %s: %s", d.Name, d.Status, orDash(d.Reason)))
		}
	}
	return out
}

func (g *globals) statusTable(t *table, v *StatusView) {
	w := g.io.Out
	for _, p := range v.Problems {
		fmt.Fprintln(w, g.paintLine("31", "! "+p))
	}
	if len(v.Problems) > 0 {
		fmt.Fprintln(w)
	}
	st := v.Cluster
	fmt.Fprintf(w, "Leader %s   term %d   applied index %d   answered by %s%s\n\n", orDash(st.Leader), st.Term, st.AppliedIndex, st.Self,
		mark(v.Stale, "   (its own copy, possibly behind: no leader to read through, or this node cannot write its data directory)"))
	byID := map[string]NodeMemory{}
	for _, n := range v.Nodes {
		byID[n.ID] = n
	}
	mt := &table{wide: t.wide, color: t.color}
	mt.head("NODE", "STATUS", "VOTER", "VERSION", "GPUS", "VRAM USED", "VRAM FREE", "REPLICAS", "+HTTP", "+RAFT", "+LABELS")
	for _, m := range membersFirstBad(st.Members) {
		n := byID[m.ID]
		mt.row(m.ID+mark(m.ID == st.Leader, " (leader)"), m.Status, yesNo(m.Voter), orDash(n.Version), gpuText(n.GPUs),
			bytesText(n.VRAMUsed), bytesText(n.VRAMFree), fmt.Sprint(n.Replicas), m.HTTPAddr, m.RaftAddr, labelsText(n.Labels))
	}
	_ = mt.write(w)
	fmt.Fprintln(w)
	t.head("DEPLOYMENT", "MODEL", "READY", "STATUS", "+REASON")
	deps := slices.Clone(v.Deployments)
	slices.SortStableFunc(deps, func(a, b client.Deployment) int { return a.Rank() - b.Rank() })
	for _, d := range deps {
		t.row(d.Name, d.Model, fmt.Sprintf("%d/%d", d.ReadyReplicas, d.Replicas), orDash(d.Status), d.Reason)
	}
	if len(deps) == 0 {
		t.row("(none)")
	}
}

// membersFirstBad orders members: not ready first, then by id.
func membersFirstBad(ms []client.Member) []client.Member {
	out := slices.Clone(ms)
	slices.SortStableFunc(out, func(a, b client.Member) int {
		ra, rb := a.Status == client.NodeReady, b.Status == client.NodeReady
		if ra != rb {
			if ra {
				return 1
			}
			return -1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

func gpuText(gpus []client.GPU) string {
	if len(gpus) == 0 {
		return "-"
	}
	count := map[string]int{}
	var order []string
	for _, g := range gpus {
		k := fmt.Sprintf("%s:%s", g.Model, bytesText(g.MemoryBytes))
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = fmt.Sprintf("%dx%s", count[k], k)
	}
	return strings.Join(parts, ",")
}

func labelsText(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return orDash(strings.Join(keys, ","))
}

// paintLine colours a whole line on a terminal.
func (g *globals) paintLine(code, s string) string {
	if !g.colorOn() {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
