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

func TestCLIOperator(t *testing.T) {
	c := threeNodes(t)
	env := clusterEnv(t, c, "a")
	cl := c.Client("a")
	ctx := context.Background()

	t.Run("list-peers", func(t *testing.T) {
		st, err := cl.ClusterStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var peers []cli.RaftPeer
		sovra(t, env, "operator", "raft", "list-peers", "-o", "json").ok(t).decode(t, &peers)
		if len(peers) != len(st.Members) {
			t.Fatalf("peers %+v, members %+v", peers, st.Members)
		}
		for i, p := range peers {
			m, state := st.Members[i], "follower"
			if m.ID == st.Leader {
				state = "leader"
			}
			if p.ID != m.ID || p.RaftAddr != m.RaftAddr || p.HTTPAddr != m.HTTPAddr || !p.Voter || p.State != state || p.Status != client.NodeReady {
				t.Fatalf("peer %+v, member %+v (leader %s)", p, m, st.Leader)
			}
		}

		r := sovra(t, env, "operator", "raft", "list-peers").ok(t)
		lines := r.lines()
		if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "NODE RAFT ADDRESS STATE VOTER STATUS" {
			t.Fatalf("table:\n%s", r.out)
		}
		for i, m := range st.Members {
			f := strings.Fields(lines[i+1])
			if f[0] != m.ID || f[1] != m.RaftAddr || (f[2] == "leader") != (m.ID == st.Leader) || f[3] != "yes" || f[4] != "ready" {
				t.Fatalf("row of %s: %q", m.ID, lines[i+1])
			}
		}
		outHas(t, sovra(t, env, "operator", "raft", "list-peers", "-o", "wide").ok(t).out, "HTTP ADDRESS", st.Members[2].HTTPAddr)
	})

	t.Run("errors", func(t *testing.T) {
		sovra(t, env, "operator", "raft", "remove-peer", "nope").fails(t, cli.ExitError,
			`no peer "nope" in the raft configuration`, "`sovra operator raft list-peers` lists them")
		sovra(t, env, "operator", "raft", "remove-peer").fails(t, cli.ExitUsage, "needs 1 argument(s)")
		sovra(t, env, "operator", "raft", "list-peers", "extra").fails(t, cli.ExitUsage, "takes no arguments")
		sovra(t, env, "operator", "raft", "list-peers", "--bogus").fails(t, cli.ExitUsage, "unknown flag")
		sovra(t, env, "operator", "bogus").fails(t, cli.ExitUsage, "unknown command")
		sovra(t, env, "operator", "raft", "bogus").fails(t, cli.ExitUsage, "unknown command")
		sovra(t, env.with("SOVRA_TOKEN", "wrong"), "operator", "raft", "list-peers").fails(t, cli.ExitError, "refused the credential")
		if r := sovra(t, env, "operator", "raft").ok(t); !strings.Contains(r.out, "list-peers") {
			t.Fatalf("operator raft alone shows no help:\n%s", r.out)
		}
	})

	t.Run("remove-peer", func(t *testing.T) {
		victim := followerBut(t, c, "a")
		if err := c.Nodes[victim].Stop(ctx); err != nil { // a running node would join again
			t.Fatal(err)
		}
		var out cli.Removal
		sovra(t, env, "operator", "raft", "remove-peer", victim, "-o", "json").ok(t).decode(t, &out)
		if out.Removed != victim {
			t.Fatalf("remove-peer: %+v", out)
		}
		testwait.For(t, 10*time.Second, victim+" out of the raft configuration", func() bool {
			st, err := cl.ClusterStatus(ctx)
			return err == nil && len(st.Members) == 2
		})
		var peers []cli.RaftPeer
		sovra(t, env, "operator", "raft", "list-peers", "-o", "json").ok(t).decode(t, &peers)
		if len(peers) != 2 || peers[0].ID == victim || peers[1].ID == victim {
			t.Fatalf("peers after remove-peer: %+v", peers)
		}
		if lines := sovra(t, env, "operator", "raft", "list-peers").ok(t).lines(); len(lines) != 3 {
			t.Fatalf("table after remove-peer:\n%s", strings.Join(lines, "\n"))
		}
		sovra(t, env, "operator", "raft", "remove-peer", victim).fails(t, cli.ExitError, `no peer "`+victim+`"`)
	})
}
