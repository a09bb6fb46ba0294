package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

func (g *globals) nodeCmd() *cobra.Command {
	c := group(&cobra.Command{
		Use:     "node",
		Aliases: []string{"nodes"},
		Short:   "List, inspect, cordon, drain, label and remove nodes",
		Long: `The cluster's nodes. A cordoned node takes no new replica and keeps those it
runs; a draining one also moves its replicas elsewhere, each once its
replacement is ready. Remove a node from the raft configuration only once it
is drained and stopped (or dead).`,
	})
	c.AddCommand(g.nodeListCmd(), g.nodeShowCmd(),
		g.nodeStatusCmd("cordon", "Keep new replicas off a node; those it runs stay", (*client.Client).Cordon),
		g.nodeStatusCmd("uncordon", "Make a cordoned or draining node ready again", (*client.Client).Uncordon),
		g.nodeDrainCmd(), g.nodeLabelCmd(), g.nodeRemoveCmd())
	return c
}

// nodeLookup says which node was not found and where the nodes are listed.
func nodeLookup(err error, id string) error {
	if errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("no node %q in the cluster: `sovra node list` lists them", id)
	}
	return err
}

func (g *globals) nodeListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the nodes with their status, GPUs, replicas and labels",
		Long: `List the nodes as the replicated state holds them. JSON and YAML give the
client's Node objects. Without a leader it answers from the node's own copy
(and says so on stderr).`,
		Args: noArgs,
		RunE: g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
			nodes, readCtx, err := g.readNodes(ctx, cl)
			if err != nil {
				return err
			}
			if g.structured() {
				return g.print(nodes, nil)
			}
			deps, err := cl.Deployments(readCtx)
			if err != nil {
				return err
			}
			return g.print(nodes, func(t *table) { nodeTable(t, nodes, replicaCounts(deps)) })
		}),
	}
}

// readNodes lists the nodes, from the answering node's own copy when
// there is no leader; it returns the context later reads should use.
func (g *globals) readNodes(ctx context.Context, cl *client.Client) ([]client.Node, context.Context, error) {
	nodes, err := cl.Nodes(ctx)
	if errors.Is(err, client.ErrNoLeader) {
		fmt.Fprintln(g.io.Err, "warning: no leader: showing the node's own, possibly old, copy of the state")
		ctx = client.Stale(ctx)
		nodes, err = cl.Nodes(ctx)
	}
	if nodes == nil {
		nodes = []client.Node{}
	}
	return nodes, ctx, err
}

func replicaCounts(deps []client.Deployment) map[string]int {
	count := map[string]int{}
	for _, d := range deps {
		for _, p := range d.Placements {
			count[p.Node]++
		}
	}
	return count
}

func nodeTable(t *table, nodes []client.Node, replicas map[string]int) {
	now := time.Now()
	t.head("ID", "STATUS", "VERSION", "GPUS", "REPLICAS", "LABELS", "+HTTP", "+RAFT", "+REASON", "+SINCE")
	for _, n := range nodes {
		t.row(n.ID, n.Status, orDash(n.Version), gpuText(n.GPUs), fmt.Sprint(replicas[n.ID]), labelsText(n.Labels),
			n.HTTPAddr, n.RaftAddr, orDash(n.StatusReason), ago(n.StatusSince, now))
	}
	if len(nodes) == 0 {
		t.row("(none)")
	}
}

func (g *globals) nodeShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Aliases: []string{"get", "describe"},
		Short:   "Show a node: status, addresses, labels, GPUs, models and, while it drains, what is left",
		Args:    exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			v, err := cl.Node(ctx, args[0])
			if err != nil {
				return nodeLookup(err, args[0])
			}
			return g.report(v, func(w io.Writer) { nodeDetails(v).write(w) })
		}),
	}
}

func nodeDetails(v *client.NodeView) keyValues {
	var kv keyValues
	kv.add("id", v.ID)
	kv.add("status", v.Status)
	kv.add("reason", orDash(v.StatusReason))
	kv.add("since", ago(v.StatusSince, time.Now()))
	kv.add("version", orDash(v.Version))
	kv.add("http address", v.HTTPAddr)
	kv.add("raft address", v.RaftAddr)
	kv.add("labels", labelsText(v.Labels))
	kv.add("declared labels", labelsText(v.DeclaredLabels))
	kv.add("gpus", gpuText(v.GPUs))
	for _, gpu := range v.GPUs {
		kv.add("", strings.TrimSpace(fmt.Sprintf("#%d %s %s %s", gpu.Index, gpu.Model, bytesText(gpu.MemoryBytes), gpu.UUID)))
	}
	kv.add("models", orDash(strings.Join(v.Models, ", ")))
	kv.add("joined at index", fmt.Sprint(v.JoinedIndex))
	if d := v.Drain; d != nil {
		kv.add("drain", drainSummary(d))
		for _, l := range drainLines(d) {
			kv.add("", l)
		}
	}
	return kv
}

func drainSummary(d *client.DrainReport) string {
	if d.Complete {
		return "complete: it holds no replica and may be stopped"
	}
	return fmt.Sprintf("%d replica(s) left, %d blocked", len(d.Remaining), len(d.Blocked))
}

// drainLines says what a drain still waits for: one line per replica.
func drainLines(d *client.DrainReport) []string {
	blocked := map[string]bool{}
	var moving, stuck []string
	for _, b := range d.Blocked {
		blocked[b.Deployment] = true
		stuck = append(stuck, "blocked "+b.Deployment+": "+b.Reason)
	}
	for _, r := range d.Remaining {
		if !blocked[r.Deployment] {
			moving = append(moving, "moving "+r.Deployment+": waiting for "+r.Waiting)
		}
	}
	return append(moving, stuck...)
}

// nodeStatusCmd is cordon or uncordon: one call, the new status shown.
func (g *globals) nodeStatusCmd(verb, short string, do func(*client.Client, context.Context, string, string) (*client.Node, error)) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   verb + " ID [--reason TEXT]",
		Short: short,
		Args:  exactArgs(1),
	}
	c.Flags().StringVar(&reason, "reason", "", "why, kept with the node's status and in the audit log")
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, args []string) error {
		n, err := do(cl, g.mutation(ctx), args[0], reason)
		if err != nil {
			return nodeLookup(err, args[0])
		}
		return g.report(n, func(w io.Writer) { fmt.Fprintln(w, statusLine(n)) })
	})
	return c
}

// statusLine is "node c: cordoned (maintenance)".
func statusLine(n *client.Node) string {
	s := "node " + n.ID + ": " + n.Status
	if n.StatusReason != "" {
		s += " (" + n.StatusReason + ")"
	}
	return printable(s)
}

func (g *globals) nodeLabelCmd() *cobra.Command {
	var fromDeclared bool
	c := &cobra.Command{
		Use:   "label ID [KEY=VALUE ...] [--from-declared]",
		Short: "Set the labels the scheduler places by on a node, replacing those it had",
		Long: `Set the labels deployments' constraints and spread_by match against. They
replace all the node's labels: give every one it should keep. --from-declared
starts from the labels the node declares of itself (its configuration); the
KEY=VALUE given then add to or override them.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return UsageError("%s needs the node's id: usage: %s", c.CommandPath(), c.UseLine())
			}
			return nil
		},
	}
	c.Flags().BoolVar(&fromDeclared, "from-declared", false, "start from the node's declared labels")
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, args []string) error {
		labels, err := parseLabels(args[1:])
		if err != nil {
			return err
		}
		if len(labels) == 0 && !fromDeclared {
			return UsageError("give the labels as KEY=VALUE, or --from-declared: they replace all the node's labels")
		}
		if fromDeclared {
			if labels, err = withDeclared(ctx, cl, args[0], labels); err != nil {
				return err
			}
		}
		n, err := cl.SetNodeLabels(g.mutation(ctx), args[0], labels)
		if err != nil {
			return nodeLookup(err, args[0])
		}
		return g.report(n, func(w io.Writer) { fmt.Fprintf(w, "node %s labels: %s\n", n.ID, printable(labelsText(n.Labels))) })
	})
	return c
}

// withDeclared is the node's declared labels overridden by labels.
func withDeclared(ctx context.Context, cl *client.Client, id string, labels map[string]string) (map[string]string, error) {
	n, err := cl.Node(ctx, id)
	if err != nil {
		return nil, nodeLookup(err, id)
	}
	out := map[string]string{}
	for k, v := range n.DeclaredLabels {
		out[k] = v
	}
	for k, v := range labels {
		out[k] = v
	}
	return out, nil
}

func (g *globals) nodeRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Take a node out of the raft configuration and the cluster's state",
		Long: `Take a node out of the raft configuration and the cluster's state; its
replicas are placed elsewhere. Drain it first (sovra node drain) unless it is
dead, then stop its process before removing it: a node still running with
join addresses joins again as soon as the leader tells it it is no longer a
member.`,
		Args: exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			return g.removeMember(ctx, cl, args[0], false)
		}),
	}
}

// Removal is what `sovra node remove` and `sovra operator raft
// remove-peer` answer in JSON and YAML.
type Removal struct {
	Removed string `json:"removed"`
}

// removeMember removes a node known to the raft configuration (or, unless
// raftOnly, to the state) and says so.
func (g *globals) removeMember(ctx context.Context, cl *client.Client, id string, raftOnly bool) error {
	known, err := isMember(ctx, cl, id, raftOnly)
	if err != nil {
		return err
	}
	if !known && raftOnly {
		return fmt.Errorf("no peer %q in the raft configuration: `sovra operator raft list-peers` lists them", id)
	}
	if !known {
		return fmt.Errorf("no node %q in the cluster: `sovra node list` lists them", id)
	}
	if err := cl.Remove(g.mutation(ctx), id); err != nil {
		return err
	}
	return g.report(Removal{Removed: id}, func(w io.Writer) {
		fmt.Fprintf(w, "removed node %s from the raft configuration\n", printable(id))
	})
}

func isMember(ctx context.Context, cl *client.Client, id string, raftOnly bool) (bool, error) {
	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		return false, err
	}
	for _, m := range st.Members {
		if m.ID == id {
			return true, nil
		}
	}
	if raftOnly {
		return false, nil
	}
	_, err = cl.Node(ctx, id)
	if errors.Is(err, client.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// drainPoll is how often `sovra node drain` looks at the drain.
const drainPoll = 500 * time.Millisecond

func (g *globals) nodeDrainCmd() *cobra.Command {
	var reason string
	var detach bool
	var deadline time.Duration
	c := &cobra.Command{
		Use:   "drain ID [--reason TEXT] [--detach] [--deadline 10m]",
		Short: "Move a node's replicas elsewhere and wait until it holds none",
		Long: `Drain a node: it takes no new replica and each of its replicas moves to
another node, leaving once its replacement is ready, so nothing stops serving.
The command follows the drain, printing a line whenever what is still moving
changes, and ends once the node holds no replica: it may then be stopped.

A replica no other node can take (constraints, memory) blocks the drain: it
is listed as blocked with the scheduler's reason. Past --deadline the command
exits 3 naming what is left; the drain itself goes on until the node is
uncordoned. With -o json or yaml the progress goes to stderr and stdout gets
the node with its drain report.`,
		Args: exactArgs(1),
	}
	fs := c.Flags()
	fs.StringVar(&reason, "reason", "", "why, kept with the node's status and in the audit log")
	fs.BoolVar(&detach, "detach", false, "start the drain and return at once; `sovra node show ID` follows it")
	fs.DurationVar(&deadline, "deadline", 10*time.Minute, "how long to wait for the drain before exiting 3 (the drain goes on)")
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, args []string) error {
		if deadline <= 0 {
			return UsageError("--deadline %v: give a positive duration", deadline)
		}
		id := args[0]
		n, err := cl.Drain(g.mutation(ctx), id, reason)
		if err != nil {
			return nodeLookup(err, id)
		}
		if detach {
			return g.report(n, func(w io.Writer) {
				fmt.Fprintf(w, "%s\nits replicas move elsewhere, each once its replacement is ready: `sovra node show %s` follows the drain\n", statusLine(n), id)
			})
		}
		v, err := g.watchDrain(ctx, cl, id, deadline)
		if err != nil {
			return err
		}
		return g.drained(v, deadline)
	})
	return c
}

// watchDrain looks at the node every drainPoll until its drain is
// complete or the deadline has passed, showing the progress; it returns
// the last view.
func (g *globals) watchDrain(ctx context.Context, cl *client.Client, id string, deadline time.Duration) (*client.NodeView, error) {
	p := &drainProgress{w: g.io.Out}
	if g.structured() {
		p.w = g.io.Err
	}
	end := time.NewTimer(deadline)
	defer end.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for expired := false; ; {
		v, err := cl.Node(ctx, id)
		switch {
		case err != nil && !expired && (errors.Is(err, client.ErrUnavailable) || isTimeout(err)):
			fmt.Fprintf(g.io.Err, "warning: %v; looking again\n", err) // a leader change
		case err != nil:
			return nil, nodeLookup(err, id)
		case v.Drain == nil:
			return nil, fmt.Errorf("%s: it is no longer draining (uncordoned, or down?)", statusLine(&v.Node))
		default:
			p.show(v.Drain)
			if v.Drain.Complete || expired {
				return v, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped watching (%v): the drain goes on; `sovra node show %s` follows it", ctx.Err(), id)
		case <-end.C:
			expired = true
		case <-tick.C:
		}
	}
}

// drainProgress prints a drain's lines as they change: each line once when
// it appears, and "moved X" once X has left the node.
type drainProgress struct {
	w     io.Writer
	lines map[string]bool
	left  []string
}

func (p *drainProgress) show(d *client.DrainReport) {
	left := map[string]bool{}
	for _, r := range d.Remaining {
		left[r.Deployment] = true
	}
	for _, dep := range p.left {
		if !left[dep] {
			fmt.Fprintf(p.w, "moved %s\n", printable(dep))
		}
	}
	lines := map[string]bool{}
	for _, l := range drainLines(d) {
		lines[l] = true
		if !p.lines[l] {
			fmt.Fprintln(p.w, printable(l))
		}
	}
	p.lines, p.left = lines, nil
	for _, r := range d.Remaining {
		p.left = append(p.left, r.Deployment)
	}
}

// drained ends a followed drain: the view for scripts, the verdict for
// people, exit 3 when it is not complete.
func (g *globals) drained(v *client.NodeView, deadline time.Duration) error {
	if g.structured() {
		if err := g.print(v, nil); err != nil {
			return err
		}
	}
	if !v.Drain.Complete {
		return drainTimeout(v, deadline)
	}
	if !g.structured() {
		fmt.Fprintf(g.io.Out, "node %s drained: it holds no replica and may be stopped\n", v.ID)
	}
	return nil
}

// drainTimeout names what a drain still waits for, and where to look.
func drainTimeout(v *client.NodeView, deadline time.Duration) error {
	var next []string
	for _, b := range v.Drain.Blocked {
		next = append(next, "`sovra deployment explain "+b.Deployment+"` says why "+b.Deployment+" cannot move")
	}
	if len(next) == 0 && len(v.Drain.Remaining) > 0 {
		dep := v.Drain.Remaining[0].Deployment
		next = append(next, "`sovra deployment explain "+dep+"` shows where its replacement goes")
	}
	next = append(next, "`sovra node show "+v.ID+"` follows the drain, which goes on")
	lines := drainLines(v.Drain)
	for i, l := range lines {
		lines[i] = printable(l)
	}
	return notReady("node %s is not drained after %v: %d replica(s) left\n  %s\nnext: %s",
		v.ID, deadline, len(v.Drain.Remaining), strings.Join(lines, "\n  "), strings.Join(next, "; "))
}
