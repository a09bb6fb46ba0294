package main

import (
	"context"
	"errors"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/node"
)

// TestJoinTakesURLs checks that --join takes a member's URL as well as
// host:port.
func TestJoinTakesURLs(t *testing.T) {
	t.Setenv("SOVRA_CLUSTER_TOKEN", "0123456789abcdef")
	s, err := parseServe(t, "--node-id", "n", "--raft-addr", "127.0.0.1:0",
		"--join", "http://10.0.0.1:8080,https://node-2.example:8443/,10.0.0.3:8080")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.node.Cluster.Join, ","); got != "http://10.0.0.1:8080,https://node-2.example:8443/,10.0.0.3:8080" {
		t.Fatalf("join %q", got)
	}
}

// TestServeStopsOnAWrongToken runs `sovra serve` with a cluster token the
// member refuses: it must stop with an error (exit status 1, not a usage
// error's 2) that names the refusal and what to fix.
func TestServeStopsOnAWrongToken(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	member := testnode.Start(t, sim.URL(), func(c *node.Config) {
		c.NodeID, c.Cluster.RaftAddr, c.Cluster.Bootstrap, c.Cluster.Token = "a", "127.0.0.1:0", true, "the-members-cluster-token"
	})
	root := newRoot(cli.StdIO())
	root.SetArgs([]string{"serve", "--node-id", "b", "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--join", "http://" + member.Addr(), "--data-dir", t.TempDir(), "--ollama", sim.URL(), "--log-level", "error",
		"--cluster-token", "another-cluster-token", "--admin-token", testnode.Token})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	if ctx.Err() != nil {
		t.Fatal("serve kept running with a refused token")
	}
	var ue usageError
	if !errors.Is(err, cluster.ErrBadToken) || errors.As(err, &ue) || !strings.Contains(err.Error(), "same cluster token") {
		t.Fatalf("serve returned %v; want the refused token (exit 1) and how to fix it", err)
	}
}
