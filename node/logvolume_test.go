package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/node"
)

// idleWindow is how long TestIdleClusterIsQuiet watches an idle cluster.
const idleWindow = 30 * time.Second

// TestIdleClusterIsQuiet starts three nodes with the default timings
// (load exchanges every 100ms, heartbeats every second) and checks that,
// once they have formed a cluster, an idle cluster writes no line at info
// or above: routine traffic between nodes logs at debug.
func TestIdleClusterIsQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("watches an idle cluster for 30s")
	}
	ids := []string{"q1", "q2", "q3"}
	logs := map[string]*observer.ObservedLogs{}
	nodes := map[string]*node.Node{}
	var join []string
	for _, id := range ids {
		core, obs := observer.New(zapcore.InfoLevel)
		logs[id] = obs
		nodes[id] = startQuiet(t, zap.New(core), id, join...)
		if join == nil {
			join = []string{nodes[id].Addr()}
		}
	}
	waitView(t, nodes[ids[0]].URL(), allReady(len(ids)))
	waitGPUs(t, nodes[ids[0]].URL(), len(ids))
	start := map[string]int{}
	for _, id := range ids {
		start[id] = logs[id].Len()
	}
	time.Sleep(idleWindow) // the test is of what an idle cluster does over time
	var lines []string
	for _, id := range ids {
		after := logs[id].All()[start[id]:]
		t.Logf("%s: %d lines at info or above in %v (%.0f a minute)", id, len(after), idleWindow,
			float64(len(after))*float64(time.Minute)/float64(idleWindow))
		for i, e := range after {
			if i < 5 {
				lines = append(lines, fmt.Sprintf("%s %s %s %s", id, e.Level, e.LoggerName, e.Message))
			}
		}
	}
	if len(lines) > 0 {
		t.Fatalf("an idle cluster logged at info or above; first lines:\n%s", strings.Join(lines, "\n"))
	}
}

// startQuiet starts a cluster member with the default timings over a
// simulated Ollama, logging to log.
func startQuiet(t *testing.T, log *zap.Logger, id string, join ...string) *node.Node {
	t.Helper()
	sim := ollamasim.StartTest(t, ollamasim.Config{Name: id})
	cfg := node.DefaultConfig()
	cfg.NodeID, cfg.HTTPAddr, cfg.OllamaURL, cfg.DataDir = id, "127.0.0.1:0", sim.URL(), t.TempDir()
	cfg.AdminToken, cfg.ShutdownGrace = testnode.Token, 5*time.Second
	cfg.Cluster.RaftAddr, cfg.Cluster.Token, cfg.Cluster.GPUs = "127.0.0.1:0", token, "1xA100:80GiB"
	cfg.Cluster.Bootstrap, cfg.Cluster.Join = len(join) == 0, join
	n, err := node.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(context.Background()); err != nil {
			t.Errorf("stop %s: %v", id, err)
		}
	})
	return n
}
