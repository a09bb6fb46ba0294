package cli

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

func (g *globals) deployCmd() *cobra.Command {
	var (
		req      client.DeploymentRequest
		replicas int
		o        watchOptions
	)
	c := &cobra.Command{
		Use:   "deploy MODEL",
		Short: "Deploy a model and watch its replicas pull, load and become ready",
		Long: `Deploy a model: the leader places its replicas on nodes by GPU memory, type and
labels, and each node pulls and loads it on its Ollama. The command shows a line
per replica (node, state, pull progress with percent, bytes and speed, loading,
ready) and returns once every replica is ready (exit 0), could not be placed or
failed (exit 3, with the reason), or --timeout passed (exit 3). --detach returns
as soon as the deployment is accepted. On a non-terminal it prints a line per
change instead of redrawing.`,
		Example: `  sovra deploy llama3.1:8b --replicas 2
  sovra deploy mistral:7b --name chat --constraint jurisdiction=EU --spread-by zone
  sovra deploy qwen3:0.6b --idle-timeout 30m --detach`,
		Args: exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			req.Model = args[0]
			if req.Name == "" {
				req.Name = defaultName(req.Model)
			}
			req.Replicas = &replicas
			d, err := cl.CreateDeployment(g.mutation(ctx), req)
			if err != nil {
				return deployHint(err, req.Name)
			}
			return g.afterChange(ctx, cl, d, o)
		}),
	}
	f := c.Flags()
	f.StringVar(&req.Name, "name", "", "deployment name, the model clients ask for (default: the model's name)")
	f.IntVar(&replicas, "replicas", 1, "replicas wanted")
	f.StringArrayVar(&req.Constraints, "constraint", nil, "nodes the replicas may run on: key=value, key!=value, \"key in (a,b)\", key, !key; gpu.model in (H100,H800) (repeatable)")
	f.StringVar(&req.SpreadBy, "spread-by", "", "node label to spread the replicas over (zone, rack, ...)")
	f.IntVar(&req.Priority, "priority", 0, "higher priorities may displace lower ones when memory is short")
	f.StringVar(&req.IdleTimeout, "idle-timeout", "", "unload the replicas after no request for this long (10m, 1h); the next request loads them again")
	o.bind(c)
	return c
}

// defaultName makes a deployment name of a model name: lower case, the
// characters a name may not hold replaced by "-".
func defaultName(model string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == ':', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, model)
	return strings.Trim(name, "-.:_")
}

// deployHint adds the next step to a refused deployment.
func deployHint(err error, name string) error {
	if errorsIsConflict(err) {
		return wrapHint(err, "a deployment named "+name+" exists: `sovra deployment scale "+name+" N` changes it, --name picks another name")
	}
	return err
}
