package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/ollamarig"
)

// TestClientCannotUnloadAReplicaOnRealOllama is TestClientCannotUnloadAReplica
// against a real Ollama holding a tiny model: keep_alive 0, a short
// keep_alive or a num_ctx of its own from a client leave the deployment's
// replica loaded and pinned.
func TestClientCannotUnloadAReplicaOnRealOllama(t *testing.T) {
	ollamarig.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rigs, nodes := startOllamaCluster(ctx, t, []string{"a"}, nil)
	url := nodes["a"].URL()
	create(t, url, `{"name":"chat","model":"tiny","replicas":1}`)
	waitDep(t, url, "chat", readyOn(1))
	checkClientCannotUnload(t, url, rigs["a"].Client(), "chat", "tiny:latest")
}
