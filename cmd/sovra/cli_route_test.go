package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/testwait"
)

func TestCLIRoute(t *testing.T) {
	c := threeNodes(t)
	env := clusterEnv(t, c, "a")
	cl := c.Client("a")
	ctx := context.Background()
	on := deployOne(t, cl, "llama")
	var want *client.RoutingView
	testwait.For(t, 30*time.Second, "a to route to llama", func() bool {
		v, err := cl.Routing(ctx)
		want = v
		return err == nil && len(v.Replicas) == 1
	})

	t.Run("json", func(t *testing.T) {
		var v client.RoutingView
		sovra(t, env, "route", "-o", "json").ok(t).decode(t, &v)
		if v.Policy != want.Policy || len(v.Replicas) != 1 {
			t.Fatalf("routing %+v, want %+v", v, want)
		}
		r := v.Replicas[0]
		if r.Deployment != "llama" || r.Model != "llama3.2:1b" || r.Node != on || r.Local != (on == "a") || r.Slots != want.Replicas[0].Slots {
			t.Fatalf("replica %+v, want %+v", r, want.Replicas[0])
		}
		for _, model := range []string{"llama3.2:1b", "llama"} {
			var f client.RoutingView
			sovra(t, env, "route", "--model", model, "-o", "json").ok(t).decode(t, &f)
			if len(f.Replicas) != 1 || f.Replicas[0].Node != on {
				t.Fatalf("--model %s: %+v", model, f)
			}
		}
		var none client.RoutingView
		sovra(t, env, "route", "--model", "nope", "-o", "json").ok(t).decode(t, &none)
		if none.Policy != want.Policy || none.Replicas == nil || len(none.Replicas) != 0 {
			t.Fatalf("--model nope: %+v", none)
		}
	})

	t.Run("table", func(t *testing.T) {
		r := sovra(t, env, "route").ok(t)
		lines := r.lines()
		if len(lines) != 4 || lines[0] != "policy: "+want.Policy || lines[1] != "" ||
			strings.Join(strings.Fields(lines[2]), " ") != "DEPLOYMENT MODEL NODE HEALTH RUNNING QUEUED SLOTS TTFT (ms) TOK/S BREAKER" {
			t.Fatalf("table:\n%s", r.out)
		}
		if f := strings.Fields(lines[3]); f[0] != "llama" || f[1] != "llama3.2:1b" || f[2] != on || f[len(f)-1] != want.Replicas[0].Breaker {
			t.Fatalf("row: %q", lines[3])
		}
		outHas(t, sovra(t, env, "route", "-o", "wide").ok(t).out, "LOCAL", "REPORT AGE", "PENDING", "OUTSTANDING")
		outHas(t, sovra(t, env, "route", "--model", "nope").ok(t).out, "(no ready replica of nope)")
	})

	t.Run("errors", func(t *testing.T) {
		sovra(t, env, "route", "extra").fails(t, cli.ExitUsage, "takes no arguments")
		sovra(t, env, "route", "--bogus").fails(t, cli.ExitUsage, "unknown flag")
		sovra(t, env, "route", "--model").fails(t, cli.ExitUsage, "needs an argument")
		sovra(t, env, "route", "-o", "xml").fails(t, cli.ExitUsage, "--output")
		sovra(t, env.with("SOVRA_TOKEN", "wrong"), "route").fails(t, cli.ExitError, "refused the credential")
	})
}
