package node_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/ollamarig"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/tinymodel"
)

// TestModelWithoutFileTypeIsPlaced deploys, on a real Ollama, a model
// whose GGUF has no general.file_type (some converters leave it out):
// the node registers it with its file size, the scheduler places it, and
// it answers.
func TestModelWithoutFileTypeIsPlaced(t *testing.T) {
	ollamarig.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rig := ollamarig.Start(t, ollamarig.Options{})
	if err := rig.CreateTinyWith(ctx, "acme/untyped:1", ollamarig.CreateOptions{Model: tinymodel.Options{NoFileType: true}}); err != nil {
		t.Fatal(err)
	}
	n := testnode.Start(t, rig.URL, placed("o1", "1xA100:80GiB", "zone=o1"))
	url := n.URL()
	waitView(t, url, allReady(1))
	create(t, url, `{"name":"untyped","model":"acme/untyped:1","replicas":1}`)
	waitDep(t, url, "untyped", readyOn(1))
	body := `{"model":"untyped","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`
	if st := admin(t, "POST", url+"/v1/chat/completions", body, nil); st != http.StatusOK {
		t.Fatalf("chat with the deployment: %d", st)
	}
}
