package main

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/testcluster"
	"github.com/sovra/sovra/internal/testwait"
)

// deployOne creates a deployment of one replica of llama3.2:1b (on the
// nodes constraints allow) and returns the node its ready replica is on.
func deployOne(t *testing.T, cl *client.Client, name string, constraints ...string) string {
	t.Helper()
	one := 1
	req := client.DeploymentRequest{Name: name, Model: "llama3.2:1b", Replicas: &one, Constraints: constraints}
	if _, err := cl.CreateDeployment(context.Background(), req); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return readyOn(t, cl, name, "")
}

// readyOn waits until deployment name is settled with its one replica
// ready on a node other than not, and returns that node.
func readyOn(t *testing.T, cl *client.Client, name, not string) string {
	t.Helper()
	var node string
	testwait.For(t, 30*time.Second, name+" ready on a node other than "+not, func() bool {
		d, err := cl.Deployment(context.Background(), name)
		if err != nil || !d.Settled || d.ReadyReplicas != 1 || len(d.Placements) != 1 {
			return false
		}
		node = d.Placements[0].Node
		return d.Placements[0].Ready && node != not
	})
	return node
}

// followerBut is a node of c that is neither the leader nor avoid.
func followerBut(t *testing.T, c *testcluster.Cluster, avoid string) string {
	t.Helper()
	st, err := c.Client(avoid).ClusterStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.IDs {
		if id != st.Leader && id != avoid {
			return id
		}
	}
	t.Fatalf("no follower but %s in %+v", avoid, st)
	return ""
}

// outHas fails the test unless out holds every one of want.
func outHas(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestCLINode(t *testing.T) {
	c := threeNodes(t)
	env := clusterEnv(t, c, "a")
	cl := c.Client("a")
	ctx := context.Background()

	t.Run("list", func(t *testing.T) {
		var got []client.Node
		sovra(t, env, "node", "list", "-o", "json").ok(t).decode(t, &got)
		want, err := cl.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || len(want) != 3 {
			t.Fatalf("nodes %+v, want %+v", got, want)
		}
		for i, n := range got {
			w := want[i]
			if n.ID != w.ID || n.Status != client.NodeReady || n.HTTPAddr != w.HTTPAddr || n.RaftAddr != w.RaftAddr ||
				!maps.Equal(n.Labels, w.Labels) || !reflect.DeepEqual(n.GPUs, w.GPUs) || n.Labels["zone"] != n.ID {
				t.Fatalf("node %+v, want %+v", n, w)
			}
		}

		r := sovra(t, env, "node", "list").ok(t)
		lines := r.lines()
		if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "ID STATUS VERSION GPUS REPLICAS LABELS" {
			t.Fatalf("table:\n%s", r.out)
		}
		for i, n := range want {
			f := strings.Fields(lines[i+1])
			if f[0] != n.ID || f[1] != "ready" || !strings.Contains(lines[i+1], "1xA100:80.0 GiB") || f[len(f)-1] != "zone="+n.ID {
				t.Fatalf("row of %s: %q", n.ID, lines[i+1])
			}
		}
		if strings.Contains(r.out, want[0].HTTPAddr) {
			t.Fatalf("HTTP address without -o wide:\n%s", r.out)
		}
		r = sovra(t, env, "nodes", "list", "-o", "wide").ok(t)
		outHas(t, r.out, "HTTP", "RAFT", "REASON", "SINCE", want[1].HTTPAddr, want[2].RaftAddr)
		r = sovra(t, env, "node", "list", "-o", "yaml").ok(t)
		outHas(t, r.out, "- id: a\n", "  status: ready\n")
	})

	t.Run("show", func(t *testing.T) {
		var v client.NodeView
		sovra(t, env, "node", "show", "b", "-o", "json").ok(t).decode(t, &v)
		want, err := cl.Node(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		if v.ID != "b" || v.HTTPAddr != want.HTTPAddr || !maps.Equal(v.Labels, want.Labels) ||
			!maps.Equal(v.DeclaredLabels, want.DeclaredLabels) || !reflect.DeepEqual(v.GPUs, want.GPUs) || v.Drain != nil {
			t.Fatalf("node %+v, want %+v", v, want)
		}
		r := sovra(t, env, "node", "show", "b").ok(t)
		outHas(t, r.out, "id:               b\n", "status:           ready\n", "http address:     "+want.HTTPAddr,
			"raft address:     "+want.RaftAddr, "labels:           zone=b\n", "declared labels:  zone=b\n",
			"gpus:             1xA100:80.0 GiB\n", "#0 A100 80.0 GiB", "joined at index:")
		if strings.Contains(r.out, "drain:") {
			t.Fatalf("drain report of a ready node:\n%s", r.out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, args := range [][]string{
			{"node", "show", "nope"}, {"node", "cordon", "nope"}, {"node", "uncordon", "nope"},
			{"node", "drain", "nope"}, {"node", "label", "nope", "k=v"}, {"node", "remove", "nope"},
		} {
			sovra(t, env, args...).fails(t, cli.ExitError, `no node "nope" in the cluster`, "`sovra node list` lists them")
		}
		for _, args := range [][]string{{"node", "show"}, {"node", "cordon"}, {"node", "drain"}, {"node", "remove"}, {"node", "show", "a", "b"}} {
			sovra(t, env, args...).fails(t, cli.ExitUsage, "needs 1 argument(s)")
		}
		sovra(t, env, "node", "label").fails(t, cli.ExitUsage, "needs the node's id")
		sovra(t, env, "node", "label", "a").fails(t, cli.ExitUsage, "KEY=VALUE", "--from-declared")
		sovra(t, env, "node", "label", "a", "novalue").fails(t, cli.ExitUsage, `label "novalue"`)
		sovra(t, env, "node", "label", "a", "k=1", "k=2").fails(t, cli.ExitUsage, "given twice")
		sovra(t, env, "node", "list", "extra").fails(t, cli.ExitUsage, "takes no arguments")
		sovra(t, env, "node", "list", "--bogus").fails(t, cli.ExitUsage, "unknown flag")
		sovra(t, env, "node", "drain", "a", "--deadline", "soon").fails(t, cli.ExitUsage, "--deadline")
		sovra(t, env, "node", "drain", "a", "--deadline", "0s").fails(t, cli.ExitUsage, "--deadline 0s")
		sovra(t, env, "node", "show", "a", "-o", "xml").fails(t, cli.ExitUsage, "--output")
		sovra(t, env, "node", "bogus").fails(t, cli.ExitUsage, "unknown command")
		bad := env.with("SOVRA_TOKEN", "wrong")
		sovra(t, bad, "node", "list").fails(t, cli.ExitError, "refused the credential")
		sovra(t, bad, "node", "cordon", "a").fails(t, cli.ExitError, "refused the credential")
		if n, err := cl.Node(ctx, "a"); err != nil || n.Status != client.NodeReady {
			t.Fatalf("a after the refused calls: %+v %v", n, err)
		}
	})

	t.Run("cordon and uncordon", func(t *testing.T) {
		r := sovra(t, env, "node", "cordon", "c", "--reason", "maintenance").ok(t)
		if r.out != "node c: cordoned (maintenance)\n" {
			t.Fatalf("cordon: %q", r.out)
		}
		if n, err := cl.Node(ctx, "c"); err != nil || n.Status != client.NodeCordoned || n.StatusReason != "maintenance" {
			t.Fatalf("c after cordon: %+v %v", n, err)
		}
		outHas(t, sovra(t, env, "node", "list").ok(t).out, "cordoned")
		var n client.Node
		sovra(t, env, "node", "uncordon", "c", "--reason", "done", "-o", "json").ok(t).decode(t, &n)
		if n.ID != "c" || n.Status != client.NodeReady || n.StatusReason != "done" {
			t.Fatalf("uncordon: %+v", n)
		}
		if got, err := cl.Node(ctx, "c"); err != nil || got.Status != client.NodeReady {
			t.Fatalf("c after uncordon: %+v %v", got, err)
		}
		r = sovra(t, env, "node", "uncordon", "c").ok(t)
		if r.out != "node c: ready (done)\n" {
			t.Fatalf("uncordon of a ready node: %q", r.out)
		}
	})

	t.Run("label", func(t *testing.T) {
		r := sovra(t, env, "node", "label", "b", "zone=b", "tier=gold").ok(t)
		if r.out != "node b labels: tier=gold,zone=b\n" {
			t.Fatalf("label: %q", r.out)
		}
		if n, err := cl.Node(ctx, "b"); err != nil || !maps.Equal(n.Labels, map[string]string{"zone": "b", "tier": "gold"}) {
			t.Fatalf("b after label: %+v %v", n, err)
		}
		var n client.Node
		sovra(t, env, "node", "label", "b", "--from-declared", "-o", "json").ok(t).decode(t, &n)
		if !maps.Equal(n.Labels, map[string]string{"zone": "b"}) {
			t.Fatalf("labels from declared: %+v", n.Labels)
		}
		if got, err := cl.Node(ctx, "b"); err != nil || !maps.Equal(got.Labels, got.DeclaredLabels) {
			t.Fatalf("b after --from-declared: %+v %v", got, err)
		}
	})

	t.Run("drain moves the replica", func(t *testing.T) {
		from := deployOne(t, cl, "llama")
		r := sovra(t, env, "node", "drain", from, "--reason", "kernel upgrade").ok(t)
		lines := r.lines()
		if len(lines) < 3 || lines[0] != "moving llama: waiting for a replacement to be ready elsewhere" ||
			!slices.Contains(lines, "moved llama") || lines[len(lines)-1] != "node "+from+" drained: it holds no replica and may be stopped" {
			t.Fatalf("drain progress:\n%s", r.out)
		}
		to := readyOn(t, cl, "llama", from)
		n, err := cl.Node(ctx, from)
		if err != nil || n.Status != client.NodeDraining || n.StatusReason != "kernel upgrade" || n.Drain == nil || !n.Drain.Complete {
			t.Fatalf("%s after the drain: %+v %v", from, n, err)
		}
		outHas(t, sovra(t, env, "node", "show", from).ok(t).out, "status:           draining\n",
			"drain:            complete: it holds no replica and may be stopped")
		outHas(t, sovra(t, env, "node", "list").ok(t).out, "draining")

		// Scripts get the node with its drain report, and no progress on stdout.
		var v client.NodeView
		sovra(t, env, "node", "drain", from, "-o", "json").ok(t).decode(t, &v)
		if v.ID != from || v.Status != client.NodeDraining || v.Drain == nil || !v.Drain.Complete || len(v.Drain.Remaining) != 0 {
			t.Fatalf("drain -o json: %+v", v)
		}
		sovra(t, env, "node", "uncordon", from).ok(t)

		r = sovra(t, env, "node", "drain", to, "--detach").ok(t)
		if !strings.HasPrefix(r.out, "node "+to+": draining (draining by an operator)\n") || !strings.Contains(r.out, "sovra node show "+to) {
			t.Fatalf("drain --detach: %q", r.out)
		}
		readyOn(t, cl, "llama", to)
		sovra(t, env, "node", "uncordon", to).ok(t)
		if err := cl.DeleteDeployment(ctx, "llama"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("drain past the deadline", func(t *testing.T) {
		deployOne(t, cl, "pinned", "zone=b")
		r := sovra(t, env, "node", "drain", "b", "--deadline", "1500ms")
		r.fails(t, cli.ExitNotReady, "node b is not drained after 1.5s: 1 replica(s) left", "blocked pinned: ",
			"`sovra deployment explain pinned` says why pinned cannot move", "`sovra node show b`")
		if !strings.HasPrefix(r.out, "blocked pinned: ") {
			t.Fatalf("progress of a blocked drain:\n%s", r.out)
		}
		var v client.NodeView
		r = sovra(t, env, "node", "drain", "b", "--deadline", "100ms", "-o", "json")
		if r.code != cli.ExitNotReady {
			t.Fatalf("exit %d: %s", r.code, r.err)
		}
		r.decode(t, &v)
		if v.Drain == nil || v.Drain.Complete || len(v.Drain.Blocked) != 1 || v.Drain.Blocked[0].Deployment != "pinned" ||
			!strings.Contains(r.err, "blocked pinned: ") {
			t.Fatalf("blocked drain -o json: %+v\nstderr: %s", v, r.err)
		}
		outHas(t, sovra(t, env, "node", "show", "b").ok(t).out, "drain:            1 replica(s) left, 1 blocked\n", "blocked pinned: ")
		sovra(t, env, "node", "uncordon", "b").ok(t)
		if d, err := cl.Deployment(ctx, "pinned"); err != nil || d.ReadyReplicas != 1 || d.Placements[0].Node != "b" {
			t.Fatalf("pinned after the abandoned drain: %+v %v", d, err)
		}
	})

	t.Run("remove", func(t *testing.T) {
		// A node still running would join again: stop it first.
		victim := followerBut(t, c, "a")
		if err := c.Nodes[victim].Stop(ctx); err != nil {
			t.Fatal(err)
		}
		r := sovra(t, env, "node", "remove", victim).ok(t)
		if r.out != "removed node "+victim+" from the raft configuration\n" {
			t.Fatalf("remove: %q", r.out)
		}
		testwait.For(t, 10*time.Second, victim+" out of the raft configuration and the state", func() bool {
			st, err := cl.ClusterStatus(ctx)
			nodes, nerr := cl.Nodes(ctx)
			return err == nil && nerr == nil && len(st.Members) == 2 && len(nodes) == 2
		})
		var nodes []client.Node
		sovra(t, env, "node", "list", "-o", "json").ok(t).decode(t, &nodes)
		if len(nodes) != 2 || slices.ContainsFunc(nodes, func(n client.Node) bool { return n.ID == victim }) {
			t.Fatalf("nodes after remove: %+v", nodes)
		}
		sovra(t, env, "node", "remove", victim).fails(t, cli.ExitError, `no node "`+victim+`"`)
	})
}
