package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/ollamarig"
	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testcluster"
	"github.com/sovra/sovra/internal/tinymodel"
)

// TestModelBundleOnRealOllama moves a model between two Ollamas that
// share nothing, as between two sites with no network: `sovra model
// export` writes it from one's models directory to a file, `sovra model
// import` puts it on the other (a damaged bundle is refused), and a
// cluster over the second deploys it, with its figures read from there,
// and serves it. A GGUF file is imported the same way.
func TestModelBundleOnRealOllama(t *testing.T) {
	ollamarig.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	from := ollamarig.Start(t, ollamarig.Options{NumParallel: 1})
	if err := from.CreateTiny(ctx, "tiny"); err != nil {
		t.Fatal(err)
	}
	to := ollamarig.Start(t, ollamarig.Options{NumParallel: 1})
	env := cliEnv{"HOME": t.TempDir()}
	file := filepath.Join(t.TempDir(), "tiny.bundle")

	sovra(t, env, "model", "export", "tiny", file, "--ollama-models", from.ModelsDir).ok(t)
	sovra(t, env, "model", "export", "tiny", file, "--ollama-models", from.ModelsDir).fails(t, cli.ExitUsage, "--force")
	sovra(t, env, "model", "export", "nope", file+"2", "--ollama-models", from.ModelsDir).fails(t, cli.ExitError, "nope")

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	damaged := slices.Clone(data)
	damaged[len(damaged)-4096] ^= 0xff // inside the last blob
	sovra(t, env, "model", "import", writeFile(t, "damaged.bundle", string(damaged)), "--ollama", to.URL).fails(t, cli.ExitError, "damaged")
	if names := to.ModelNames(t); len(names) != 0 {
		t.Fatalf("a damaged bundle left %q on the Ollama", names)
	}

	r := sovra(t, env, "model", "import", file, "--ollama", to.URL).ok(t)
	if !strings.Contains(r.out, "imported tiny:latest") {
		t.Fatalf("import: %s", r.out)
	}
	gguf := filepath.Join(t.TempDir(), "w.gguf")
	if _, _, err := tinymodel.WriteFile(gguf, tinymodel.Options{}); err != nil {
		t.Fatal(err)
	}
	sovra(t, env, "model", "import", gguf, "--ollama", to.URL).fails(t, cli.ExitUsage, "--name")
	sovra(t, env, "model", "import", gguf, "--ollama", to.URL, "--name", "acme/raw:q8").ok(t)
	if names := to.ModelNames(t); !slices.Equal(names, []string{"acme/raw:q8", "tiny:latest"}) {
		t.Fatalf("the Ollama lists %q", names)
	}

	// A model of another Ollama's models directory (copied, or mounted).
	third := ollamarig.Start(t, ollamarig.Options{NumParallel: 1})
	sovra(t, env, "model", "import", from.ModelsDir, "--ollama", third.URL).fails(t, cli.ExitUsage, "--name")
	sovra(t, env, "model", "import", from.ModelsDir, "--name", "tiny", "--ollama", third.URL).ok(t)
	if names := third.ModelNames(t); !slices.Equal(names, []string{"tiny:latest"}) {
		t.Fatalf("the third Ollama lists %q", names)
	}

	c := testcluster.Start(t, []testcluster.Spec{{ID: "a", OllamaURL: to.URL}})
	cenv := clusterEnv(t, c, "a")
	sovra(t, cenv, "deploy", "tiny", "--timeout", "2m").ok(t)
	req, _ := http.NewRequestWithContext(ctx, "POST", c.URL("a")+"/v1/chat/completions",
		strings.NewReader(`{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := testauth.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat with the imported model: %d", resp.StatusCode)
	}
}
