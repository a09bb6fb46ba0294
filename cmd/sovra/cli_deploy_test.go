package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testcluster"
)

// pullingNodes is a cluster whose simulated Ollamas take pull to fetch a
// model of their registry (llama3.1:8b).
func pullingNodes(t *testing.T, pull time.Duration) *testcluster.Cluster {
	t.Helper()
	sim := ollamasim.Config{PullDuration: pull}
	return testcluster.Start(t, []testcluster.Spec{{ID: "a", Sim: sim}, {ID: "b", Sim: sim}, {ID: "c", Sim: sim}})
}

func TestCLIDeploy(t *testing.T) {
	c := pullingNodes(t, 1500*time.Millisecond)
	env := clusterEnv(t, c, "b")
	ctx := context.Background()

	t.Run("deploy watches every replica until ready", func(t *testing.T) {
		r := sovra(t, env, "deploy", "llama3.1:8b", "--name", "big", "--replicas", "2").ok(t)
		d, err := c.Client("a").Deployment(ctx, "big")
		if err != nil || d.ReadyReplicas != 2 {
			t.Fatalf("deployment after deploy: %+v %v", d, err)
		}
		for _, p := range d.Placements {
			if !strings.Contains(r.out, "replica on "+p.Node+": pulling") || !strings.Contains(r.out, "replica on "+p.Node+": ready") {
				t.Fatalf("no pulling and ready lines for %s:\n%s", p.Node, r.out)
			}
		}
		last := r.lines()[len(r.lines())-1]
		if !strings.HasPrefix(last, "deployment big ready: 2/2 replicas on ") {
			t.Fatalf("last line %q", last)
		}
		if !slices.ContainsFunc(r.lines(), func(l string) bool { return strings.Contains(l, "%") && strings.Contains(l, "GiB") }) {
			t.Fatalf("no progress line with percent and bytes:\n%s", r.out)
		}
		var st cli.StatusView
		sovra(t, env, "status", "-o", "json").ok(t).decode(t, &st)
		m, err := c.Client("a").CatalogEntry(ctx, "llama3.1:8b")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range st.Nodes {
			holds := slices.Contains(strings.Split(placementsOn(d), ","), n.ID)
			if holds != (n.Replicas == 1) || holds != (n.VRAMUsed >= m.MemoryBytes) || n.VRAMUsed+n.VRAMFree != n.VRAMTotal {
				t.Fatalf("node %s (holds a replica: %v) memory %+v, a replica needs %d", n.ID, holds, n, m.MemoryBytes)
			}
		}
	})

	t.Run("json waits and prints the ready deployment", func(t *testing.T) {
		var d client.Deployment
		sovra(t, env, "deploy", "llama3.2:1b", "--name", "small", "--replicas", "3", "--constraint", "zone!=x", "-o", "json").ok(t).decode(t, &d)
		if d.Name != "small" || d.ReadyReplicas != 3 || len(d.Placements) != 3 || d.Constraints[0] != "zone!=x" {
			t.Fatalf("deployment %+v", d)
		}
	})

	t.Run("the same idempotency key applies once", func(t *testing.T) {
		args := []string{"deploy", "llama3.2:1b", "--name", "once", "--idempotency-key", "k-once-1", "--detach", "-o", "json"}
		var first, again client.Deployment
		sovra(t, env, args...).ok(t).decode(t, &first)
		sovra(t, env, args...).ok(t).decode(t, &again)
		if again.CreatedIndex != first.CreatedIndex {
			t.Fatalf("a retry made another deployment: %d then %d", first.CreatedIndex, again.CreatedIndex)
		}
		sovra(t, env, "deploy", "llama3.2:1b", "--name", "once").fails(t, cli.ExitError, "exists", "deployment scale once")
	})

	t.Run("list show explain scale delete", func(t *testing.T) {
		var deps []client.Deployment
		sovra(t, env, "deployment", "list", "-o", "json").ok(t).decode(t, &deps)
		var names []string
		for _, d := range deps {
			names = append(names, d.Name)
		}
		if !slices.Equal(names, []string{"big", "once", "small"}) {
			t.Fatalf("names %q", names)
		}
		r := sovra(t, env, "deployment", "list").ok(t)
		if !strings.Contains(r.out, "small") || !strings.Contains(r.out, "3/3") {
			t.Fatalf("list table:\n%s", r.out)
		}
		r = sovra(t, env, "deployment", "show", "small").ok(t)
		for _, want := range []string{"Model:", "llama3.2:1b", "NODE", "ready"} {
			if !strings.Contains(r.out, want) {
				t.Fatalf("show lacks %q:\n%s", want, r.out)
			}
		}
		var e client.Explanation
		sovra(t, env, "deployment", "explain", "small", "-o", "json").ok(t).decode(t, &e)
		if e.Deployment != "small" || len(e.Nodes) != 3 {
			t.Fatalf("explain %+v", e)
		}
		if r := sovra(t, env, "deployment", "explain", "small").ok(t); r.out != e.Text {
			t.Fatalf("explain text differs from the API's:\n%s\nvs\n%s", r.out, e.Text)
		}
		r = sovra(t, env, "deployment", "scale", "small", "1").ok(t)
		if !strings.Contains(r.out, "deployment small ready: 1/1 replicas") {
			t.Fatalf("scale:\n%s", r.out)
		}
		sovra(t, env, "deployment", "delete", "small").ok(t)
		if _, err := c.Client("a").Deployment(ctx, "small"); !isNotFoundErr(err) {
			t.Fatalf("deleted deployment still there: %v", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		sovra(t, env, "deployment", "show", "nope").fails(t, cli.ExitError, "nope", "sovra deployment list")
		sovra(t, env, "deployment", "scale", "big", "many").fails(t, cli.ExitUsage, "whole number")
		sovra(t, env, "deployment", "scale", "big").fails(t, cli.ExitUsage, "needs 2 argument")
		sovra(t, env, "deploy").fails(t, cli.ExitUsage, "needs 1 argument")
		sovra(t, env, "deploy", "x", "--replicas", "two").fails(t, cli.ExitUsage, "invalid argument")
		sovra(t, env, "deployment", "bogus").fails(t, cli.ExitUsage, "unknown command")
		sovra(t, env, "deploy", "nosuch-model:3b").fails(t, cli.ExitNotReady, "could not be placed", "explain nosuch-model:3b")
		sovra(t, env, "deploy", "llama3.2:1b", "--name", "nowhere", "--constraint", "zone=x").fails(t, cli.ExitNotReady, "could not be placed")
		sovra(t, env.with("SOVRA_TOKEN", "nope"), "deployment", "list").fails(t, cli.ExitError, "refused the credential")
	})

	t.Run("timeout", func(t *testing.T) {
		sovra(t, env, "deployment", "delete", "big").ok(t)
		sovra(t, env, "deploy", "llama3.1:8b", "--name", "slow", "--timeout", "200ms").fails(t, cli.ExitNotReady, "not ready within 200ms", "explain slow")
	})

	t.Run("detach", func(t *testing.T) {
		r := sovra(t, env, "deploy", "llama3.2:1b", "--name", "later", "--detach").ok(t)
		if !strings.Contains(r.out, "deployment later accepted") {
			t.Fatalf("detach:\n%s", r.out)
		}
	})
}

func isNotFoundErr(err error) bool {
	var ce *client.Error
	return err != nil && asClientError(err, &ce) && ce.Status == 404
}

func placementsOn(d *client.Deployment) string {
	var nodes []string
	for _, p := range d.Placements {
		nodes = append(nodes, p.Node)
	}
	return strings.Join(nodes, ",")
}
