// Package testcluster starts a real sovra cluster for tests of other
// packages (the CLI's, the benchmark's): real nodes on loopback TCP, raft
// on disk, each node over its own simulated Ollama, with fast timings.
package testcluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
)

// Token is the management token of the cluster's nodes.
const Token = testnode.Token

// Spec is one node of a cluster.
type Spec struct {
	ID string
	// GPUs is the node's inventory (default "1xA100:80GiB").
	GPUs string
	// Labels are labels beyond zone=<id>, "k=v,k=v".
	Labels string
	Sim    ollamasim.Config
	// OllamaURL, when set, is the node's Ollama (a real one) instead of
	// a simulated one started with Sim.
	OllamaURL string
}

// Cluster is the started cluster.
type Cluster struct {
	IDs   []string
	Nodes map[string]*node.Node
	Sims  map[string]*ollamasim.Server
}

// Timings of the test clusters: elections and scheduling within a second.
var (
	Raft = cluster.RaftTimings{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 20 * time.Millisecond}
	Scheduling = cluster.SchedulingConfig{Debounce: 20 * time.Millisecond, Interval: 500 * time.Millisecond, DownGrace: 2 * time.Second}
)

const clusterToken = "testcluster-secret"

// Start starts one simulated Ollama and one node per spec (the first
// bootstraps, the others join it) and waits until every node is a ready
// voter with its GPUs known and its declared labels set as the labels it
// is placed by. edit adjusts every node's configuration.
func Start(t testing.TB, specs []Spec, edit ...func(*node.Config)) *Cluster {
	t.Helper()
	c := &Cluster{Nodes: map[string]*node.Node{}, Sims: map[string]*ollamasim.Server{}}
	var join []string
	for i, s := range specs {
		c.IDs = append(c.IDs, s.ID)
		backend := s.OllamaURL
		if backend == "" {
			sim := s.Sim
			sim.Name = s.ID
			c.Sims[s.ID] = ollamasim.StartTest(t, sim)
			backend = c.Sims[s.ID].URL()
		}
		edits := append([]func(*node.Config){member(s, join)}, edit...)
		c.Nodes[s.ID] = testnode.Start(t, backend, edits...)
		if i == 0 {
			join = []string{c.Nodes[s.ID].Addr()}
		}
	}
	c.settle(t)
	return c
}

func member(s Spec, join []string) func(*node.Config) {
	return func(cfg *node.Config) {
		cfg.NodeID = s.ID
		cfg.Cluster.RaftAddr = "127.0.0.1:0"
		cfg.Cluster.Bootstrap = len(join) == 0
		cfg.Cluster.Join = join
		cfg.Cluster.Token = clusterToken
		cfg.Cluster.Raft = Raft
		cfg.Cluster.HeartbeatInterval = 100 * time.Millisecond
		cfg.Cluster.DownAfter = 1500 * time.Millisecond
		cfg.Cluster.Scheduling = Scheduling
		cfg.Cluster.GPUs = s.GPUs
		if cfg.Cluster.GPUs == "" {
			cfg.Cluster.GPUs = "1xA100:80GiB"
		}
		cfg.Cluster.Labels = map[string]string{"zone": s.ID}
		for _, kv := range strings.Split(s.Labels, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				cfg.Cluster.Labels[k] = v
			}
		}
	}
}

// URL is the API of node id.
func (c *Cluster) URL(id string) string { return c.Nodes[id].URL() }

// Client is a client of node id with the management token.
func (c *Cluster) Client(id string) *client.Client {
	return client.New(c.URL(id), client.WithToken(Token), client.WithTimeout(10*time.Second))
}

// settle waits for a leader, every member a ready voter with its GPUs,
// then labels every node as it declared itself.
func (c *Cluster) settle(t testing.TB) {
	t.Helper()
	cl := c.Client(c.IDs[0])
	ctx := context.Background()
	testwait.For(t, 30*time.Second, "every node a ready voter with its GPUs", func() bool {
		st, err := cl.ClusterStatus(ctx)
		if err != nil || st.Leader == "" || len(st.Members) != len(c.IDs) {
			return false
		}
		for _, m := range st.Members {
			if !m.Voter || m.Status != client.NodeReady {
				return false
			}
		}
		nodes, err := cl.Nodes(ctx)
		if err != nil || len(nodes) != len(c.IDs) {
			return false
		}
		for _, n := range nodes {
			if len(n.GPUs) == 0 {
				return false
			}
		}
		return true
	})
	nodes, err := cl.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		// Setting labels is idempotent: an outcome left unknown by an
		// election right after the cluster formed is retried.
		var err error
		testwait.Until(t, 30*time.Second, func() bool {
			_, err = cl.SetNodeLabels(ctx, n.ID, n.DeclaredLabels)
			return err == nil
		}, func() string { return fmt.Sprintf("labels of %s set; last error %v", n.ID, err) })
	}
}
