package cli

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

func (g *globals) routeCmd() *cobra.Command {
	var model string
	c := &cobra.Command{
		Use:   "route [--model MODEL]",
		Short: "Show how the node called routes: its policy and every ready replica's load and health",
		Long: `Show the node's routing view: its policy, then every ready replica it may
send a request to, with the load (running, queued, slots), speed (time to first
token, tokens per second), health and circuit breaker it routes by. Each node
keeps its own view: call the node whose routing you want to see with --addr.
--model keeps the replicas of a model or deployment.`,
		Args: noArgs,
	}
	c.Flags().StringVar(&model, "model", "", "only the replicas of this model or deployment")
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
		v, err := cl.Routing(ctx)
		if err != nil {
			return err
		}
		v.Replicas = routedReplicas(v.Replicas, model)
		return g.print(v, func(t *table) {
			fmt.Fprintf(g.io.Out, "policy: %s\n\n", printable(orDash(v.Policy)))
			routeTable(t, v.Replicas, model)
		})
	})
	return c
}

// routedReplicas keeps those of model (a model or deployment name; ""
// keeps all), sorted by deployment and node.
func routedReplicas(rs []client.ReplicaView, model string) []client.ReplicaView {
	out := []client.ReplicaView{}
	for _, r := range rs {
		if model == "" || r.Model == model || r.Deployment == model {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b client.ReplicaView) int {
		return cmp.Or(cmp.Compare(a.Deployment, b.Deployment), cmp.Compare(a.Node, b.Node))
	})
	return out
}

func routeTable(t *table, rs []client.ReplicaView, model string) {
	t.head("DEPLOYMENT", "MODEL", "NODE", "HEALTH", "RUNNING", "QUEUED", "SLOTS", "TTFT (ms)", "TOK/S", "BREAKER",
		"+LOCAL", "+REPORT AGE", "+PENDING", "+OUTSTANDING")
	for _, r := range rs {
		t.row(r.Deployment, r.Model, r.Node, orDash(r.Health), fmt.Sprint(r.Running), fmt.Sprint(r.Queued), fmt.Sprint(r.Slots),
			figure(r.TTFTMs, "%.0f"), figure(r.TokensPerSec, "%.1f"), orDash(r.Breaker),
			yesNo(r.Local), reportAge(r.ReportAgeMs), fmt.Sprint(r.Pending), fmt.Sprint(r.Outstanding))
	}
	if len(rs) == 0 && model != "" {
		t.row("(no ready replica of " + model + ")")
	} else if len(rs) == 0 {
		t.row("(no ready replica)")
	}
}

// figure is a measured figure, "-" before any measure.
func figure(v float64, format string) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func reportAge(ms float64) string {
	if ms <= 0 {
		return "-"
	}
	return (time.Duration(ms * float64(time.Millisecond))).Round(time.Millisecond).String()
}
