package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
)

// TestMemberComesBackAtANewAddress restarts a member with its data but
// another raft address, as a container or pod with a new IP does: the
// leader moves it in the raft configuration, and it counts again as a
// voter: with another member stopped, the cluster still has a majority.
func TestMemberComesBackAtANewAddress(t *testing.T) {
	dirC := t.TempDir()
	keepDir := func(c *node.Config) {
		if c.NodeID == "c" {
			c.DataDir = dirC
		}
	}
	sims := map[string]string{}
	nodes := startNodes(t, []string{"a", "b", "c"}, func(string) string { return "" }, func(id string) string {
		sims[id] = ollamasim.StartTest(t, ollamasim.Config{Name: id}).URL()
		return sims[id]
	}, keepDir)
	cl := client.New(nodes["a"].URL(), client.WithToken(testnode.Token), client.WithTimeout(5*time.Second))
	ctx := context.Background()
	old := raftAddrOf(t, cl, "c")
	if err := nodes["c"].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	moved := testnode.Start(t, sims["c"], placed("c", "1xA100:80GiB", "zone=c", nodes["a"].Addr()), keepDir)
	var now string
	testwait.Until(t, 30*time.Second, func() bool {
		now = raftAddrOf(t, cl, "c")
		return now != old && now == moved.RaftAddr()
	}, func() string { return "c's new raft address in the configuration; it is " + now })

	if err := nodes["a"].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	clB := client.New(nodes["b"].URL(), client.WithToken(testnode.Token), client.WithTimeout(5*time.Second))
	one := 1
	testwait.For(t, 30*time.Second, "a write with b and the moved c as the majority", func() bool {
		_, err := clB.CreateDeployment(client.WithIdempotencyKey(ctx, "after-move"), client.DeploymentRequest{Name: "m", Model: "llama3.2:1b", Replicas: &one})
		return err == nil
	})
}

// raftAddrOf is the raft address a node has in the configuration.
func raftAddrOf(t *testing.T, cl *client.Client, id string) string {
	t.Helper()
	st, err := cl.ClusterStatus(context.Background())
	if err != nil {
		return ""
	}
	for _, m := range st.Members {
		if m.ID == id && m.Voter {
			return m.RaftAddr
		}
	}
	return ""
}
