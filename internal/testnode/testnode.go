// Package testnode starts real sovra nodes on loopback TCP for tests that
// several packages share.
package testnode

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/node"
)

// Token is the management token of the nodes Start runs; testauth.Client
// sends it.
const Token = testauth.Token

// Start runs a node on 127.0.0.1 with a free port over the Ollama (real or
// simulated) at ollamaURL, with Token as its management token, and stops
// it when the test ends. edit, if given, adjusts the configuration first.
// The node serves undeployed models (ServeUndeployed), as `sovra dev`
// does, since most tests ask a node for whatever its Ollama has; a test
// of the default turns it off.
func Start(t testing.TB, ollamaURL string, edit ...func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.NodeID = "test"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.OllamaURL = ollamaURL
	cfg.DataDir = t.TempDir()
	cfg.ShutdownGrace = 5 * time.Second
	cfg.AdminToken = Token
	cfg.ServeUndeployed = true
	for _, e := range edit {
		e(&cfg)
	}
	n, err := node.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("new node: %v", err)
	}
	if err := n.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Stop(context.Background()); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	return n
}
