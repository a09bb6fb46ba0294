package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

func (g *globals) deploymentCmd() *cobra.Command {
	c := group(&cobra.Command{
		Use:     "deployment",
		Aliases: []string{"deployments", "dep"},
		Short:   "List, show, scale, delete and explain deployments",
	})
	c.AddCommand(g.deploymentListCmd(), g.deploymentShowCmd(), g.scaleCmd(), g.deploymentDeleteCmd(), g.explainCmd())
	return c
}

func (g *globals) deploymentListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the deployments with ready/desired replicas",
		Args:  noArgs,
		RunE: g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
			deps, err := cl.Deployments(ctx)
			if err != nil {
				return err
			}
			return g.print(deps, func(t *table) {
				t.head("NAME", "MODEL", "READY", "STATUS", "NODES", "+PRIORITY", "+CONSTRAINTS", "+SPREAD BY", "+IDLE TIMEOUT", "+LAST USED", "+REASON")
				now := time.Now()
				for _, d := range deps {
					t.row(d.Name, d.Model, readyText(d), orDash(d.Status), orDash(placementNodes(d)), strconv.Itoa(d.Priority),
						orDash(strings.Join(d.Constraints, ",")), orDash(d.SpreadBy), idleText(d.IdleTimeout), ago(d.LastUsed, now), d.Reason)
				}
			})
		}),
	}
}

func (g *globals) deploymentShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a deployment and each of its replicas",
		Args:  exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			d, err := cl.Deployment(ctx, args[0])
			if err != nil {
				return deploymentHint(err, args[0])
			}
			return g.print(d, func(t *table) { g.showDeployment(g.io.Out, t, d) })
		}),
	}
}

func (g *globals) showDeployment(w io.Writer, t *table, d *client.Deployment) {
	kv := [][2]string{
		{"Name", d.Name}, {"Model", d.Model}, {"Replicas", readyText(*d) + " ready"},
		{"Status", orDash(d.Status)}, {"Reason", orDash(d.Reason)}, {"Settled", yesNo(d.Settled)},
		{"Priority", strconv.Itoa(d.Priority)}, {"Constraints", orDash(strings.Join(d.Constraints, ", "))},
		{"Spread by", orDash(d.SpreadBy)}, {"Idle timeout", idleText(d.IdleTimeout)},
		{"Idle", yesNo(d.Idle)}, {"Last used", ago(d.LastUsed, time.Now())}, {"Version", strconv.FormatUint(d.Version, 10)},
	}
	for _, p := range kv {
		fmt.Fprintf(w, "%-13s %s\n", p[0]+":", printable(p[1]))
	}
	fmt.Fprintln(w)
	t.head("NODE", "STATE", "READY", "PROGRESS", "ACTION", "REASON")
	for _, p := range d.Placements {
		t.row(p.Node, p.State, yesNo(p.Ready), progressText(p), orDash(p.Action), orDash(p.Reason))
	}
	if len(d.Placements) == 0 {
		t.row("(no replicas)")
	}
}

func (g *globals) scaleCmd() *cobra.Command {
	var o watchOptions
	c := &cobra.Command{
		Use:   "scale NAME REPLICAS",
		Short: "Set a deployment's replica count and watch it settle",
		Args:  exactArgs(2),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 {
				return UsageError("replicas %q: give a whole number, 0 or more", args[1])
			}
			d, err := cl.ScaleDeployment(g.mutation(ctx), args[0], n)
			if err != nil {
				return deploymentHint(err, args[0])
			}
			return g.afterChange(ctx, cl, d, o)
		}),
	}
	o.bind(c)
	return c
}

func (g *globals) deploymentDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a deployment; its replicas are unloaded",
		Args:    exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			if err := cl.DeleteDeployment(g.mutation(ctx), args[0]); err != nil {
				return deploymentHint(err, args[0])
			}
			if g.structured() {
				return g.print(map[string]string{"deleted": args[0]}, nil)
			}
			fmt.Fprintf(g.io.Out, "deleted deployment %s\n", args[0])
			return nil
		}),
	}
}

func (g *globals) explainCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "explain NAME",
		Short: "Say what the scheduler makes of every node for a deployment, and why",
		Args:  exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			e, err := cl.Explain(ctx, args[0])
			if err != nil {
				return deploymentHint(err, args[0])
			}
			if g.structured() {
				return g.print(e, nil)
			}
			_, err = io.WriteString(g.io.Out, e.Text)
			return err
		}),
	}
}

// deploymentHint adds the next step to a deployment that is not found.
func deploymentHint(err error, name string) error {
	if isNotFound(err) {
		return wrapHint(err, "`sovra deployment list` lists the deployments")
	}
	return err
}

func isNotFound(err error) bool { return errors.Is(err, client.ErrNotFound) }

func readyText(d client.Deployment) string {
	return fmt.Sprintf("%d/%d", d.ReadyReplicas, d.Replicas)
}

func placementNodes(d client.Deployment) string {
	nodes := make([]string, len(d.Placements))
	for i, p := range d.Placements {
		nodes[i] = p.Node
	}
	return strings.Join(nodes, ",")
}

func idleText(secs int64) string {
	if secs == 0 {
		return "never"
	}
	return (time.Duration(secs) * time.Second).String()
}

// progressText is a pull's progress: percent and bytes.
func progressText(p client.Placement) string {
	if p.State != client.PlacementPulling || p.ProgressPercent == nil {
		return "-"
	}
	s := fmt.Sprintf("%.0f%%", *p.ProgressPercent)
	if p.BytesTotal > 0 {
		s += fmt.Sprintf(" (%s of %s)", bytesText(uint64(p.BytesDone)), bytesText(uint64(p.BytesTotal)))
	}
	return s
}
