package ollamarig

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/tinymodel"
)

func TestBinaryHonoursEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvBinary, "")
	t.Setenv(EnvCacheDir, dir)
	if _, err := Binary(); err == nil || !strings.Contains(err.Error(), "scripts/ollama-build.sh") {
		t.Fatalf("Binary() with empty cache: err = %v, want a hint at the build script", err)
	}
	want := filepath.Join(dir, "ollama", Version, "ollama")
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := Binary(); err != nil || got != want {
		t.Fatalf("Binary() = %q, %v; want %q", got, err, want)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvBinary, other)
	if _, err := Binary(); err == nil {
		t.Fatal("Binary() accepted a non-executable file")
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv(
		[]string{"PATH=/bin", "OLLAMA_HOST=0.0.0.0:1", "HOME=/root", "https_proxy=http://x"},
		[]string{"HOME=/tmp/h", "OLLAMA_MODELS=/m", "OLLAMA_MODELS=/n"},
	)
	want := []string{"PATH=/bin", "HOME=/tmp/h", "OLLAMA_MODELS=/n"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("mergeEnv = %q, want %q", got, want)
	}
}

// TestRealOllama starts the real server, creates a tiny model and drives the
// main API endpoints against it.
func TestRealOllama(t *testing.T) {
	r := Start(t, Options{NumParallel: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := r.Client()

	begin := time.Now()
	if err := r.CreateTiny(ctx, "tiny:latest"); err != nil {
		t.Fatal(err)
	}
	created := time.Since(begin)
	t.Logf("created tiny:latest in %v", created)
	if created > 2*time.Second {
		t.Errorf("creating the tiny model took %v, want well under a second", created)
	}

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range list.Models {
		if m.Name == "tiny:latest" {
			found = true
			if m.Details.Family != "llama" {
				t.Errorf("tiny:latest family = %q, want llama", m.Details.Family)
			}
		}
	}
	if !found {
		t.Fatalf("/api/tags does not list tiny:latest: %+v", list.Models)
	}

	show, err := c.Show(ctx, &api.ShowRequest{Model: "tiny:latest"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capabilities: %v", show.Capabilities)

	t.Run("chat", func(t *testing.T) {
		stream := false
		var got []api.ChatResponse
		start := time.Now()
		err := c.Chat(ctx, &api.ChatRequest{
			Model:    "tiny:latest",
			Messages: []api.Message{{Role: "user", Content: "hello there"}},
			Stream:   &stream,
			Options:  map[string]any{"temperature": 0, "num_predict": 8},
		}, func(cr api.ChatResponse) error { got = append(got, cr); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("non-streamed chat gave %d responses, want 1", len(got))
		}
		resp := got[0]
		t.Logf("chat (first, includes load) in %v: %q done_reason=%s eval_count=%d prompt_eval_count=%d load=%v",
			time.Since(start), resp.Message.Content, resp.DoneReason, resp.EvalCount, resp.PromptEvalCount, resp.LoadDuration)
		if !resp.Done || resp.Message.Role != "assistant" || resp.Message.Content == "" {
			t.Errorf("chat response = %+v, want done assistant text", resp)
		}
		if resp.EvalCount != 8 || resp.PromptEvalCount == 0 {
			t.Errorf("eval_count = %d (want 8), prompt_eval_count = %d (want > 0)", resp.EvalCount, resp.PromptEvalCount)
		}
		if resp.DoneReason != "length" {
			t.Errorf("done_reason = %q, want length", resp.DoneReason)
		}
	})

	t.Run("chat stream", func(t *testing.T) {
		var chunks []api.ChatResponse
		start := time.Now()
		err := c.Chat(ctx, &api.ChatRequest{
			Model:    "tiny:latest",
			Messages: []api.Message{{Role: "user", Content: "hello there"}},
			Options:  map[string]any{"temperature": 0, "num_predict": 8},
		}, func(cr api.ChatResponse) error { chunks = append(chunks, cr); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) < 2 {
			t.Fatalf("streamed chat gave %d chunks, want several", len(chunks))
		}
		var text strings.Builder
		for i, ch := range chunks {
			if ch.Done != (i == len(chunks)-1) {
				t.Errorf("chunk %d done = %v", i, ch.Done)
			}
			text.WriteString(ch.Message.Content)
		}
		last := chunks[len(chunks)-1]
		t.Logf("streamed chat in %v: %d chunks, %q eval_count=%d eval_duration=%v",
			time.Since(start), len(chunks), text.String(), last.EvalCount, last.EvalDuration)
		if text.Len() == 0 || last.EvalCount != 8 {
			t.Errorf("streamed text %q, eval_count %d; want text and 8", text.String(), last.EvalCount)
		}
	})

	t.Run("default num_predict", func(t *testing.T) {
		stream := false
		var resp api.ChatResponse
		err := c.Chat(ctx, &api.ChatRequest{
			Model:    "tiny:latest",
			Messages: []api.Message{{Role: "user", Content: "go on"}},
			Stream:   &stream,
		}, func(cr api.ChatResponse) error { resp = cr; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if resp.EvalCount != DefaultNumPredict {
			t.Errorf("eval_count = %d, want the model's num_predict %d", resp.EvalCount, DefaultNumPredict)
		}
	})

	t.Run("generate", func(t *testing.T) {
		stream := false
		var resp api.GenerateResponse
		err := c.Generate(ctx, &api.GenerateRequest{
			Model:   "tiny:latest",
			Prompt:  "Once upon a time",
			Stream:  &stream,
			Options: map[string]any{"temperature": 0, "num_predict": 5},
		}, func(gr api.GenerateResponse) error { resp = gr; return nil })
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("generate: %q eval_count=%d", resp.Response, resp.EvalCount)
		if !resp.Done || resp.Response == "" || resp.EvalCount != 5 {
			t.Errorf("generate response = %+v", resp)
		}
	})

	t.Run("deterministic", func(t *testing.T) {
		chat := func() string {
			stream := false
			var resp api.ChatResponse
			err := c.Chat(ctx, &api.ChatRequest{
				Model:    "tiny:latest",
				Messages: []api.Message{{Role: "user", Content: "same"}},
				Stream:   &stream,
				Options:  map[string]any{"temperature": 0, "num_predict": 6},
			}, func(cr api.ChatResponse) error { resp = cr; return nil })
			if err != nil {
				t.Fatal(err)
			}
			return resp.Message.Content
		}
		if a, b := chat(), chat(); a != b {
			t.Errorf("greedy chat differs between calls: %q vs %q", a, b)
		}
	})

	t.Run("tools and thinking accepted", func(t *testing.T) {
		stream := false
		var resp api.ChatResponse
		think := api.ThinkValue{Value: true}
		var tool api.Tool
		if err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"get_weather","description":"weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}`), &tool); err != nil {
			t.Fatal(err)
		}
		err := c.Chat(ctx, &api.ChatRequest{
			Model:    "tiny:latest",
			Messages: []api.Message{{Role: "user", Content: "weather in Oslo?"}},
			Tools:    api.Tools{tool},
			Think:    &think,
			Stream:   &stream,
			Options:  map[string]any{"temperature": 0, "num_predict": 6},
		}, func(cr api.ChatResponse) error { resp = cr; return nil })
		if err != nil {
			t.Fatalf("chat with tools and think: %v", err)
		}
		t.Logf("tools+think: content=%q thinking=%q tool_calls=%d", resp.Message.Content, resp.Message.Thinking, len(resp.Message.ToolCalls))
		if !resp.Done {
			t.Errorf("response not done: %+v", resp)
		}
	})

	t.Run("embed", func(t *testing.T) {
		resp, err := c.Embed(ctx, &api.EmbedRequest{Model: "tiny:latest", Input: []string{"hello", "world"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Embeddings) != 2 {
			t.Fatalf("got %d embeddings, want 2", len(resp.Embeddings))
		}
		for i, e := range resp.Embeddings {
			if len(e) != 64 {
				t.Errorf("embedding %d has length %d, want 64", i, len(e))
			}
		}
		t.Logf("embed: %d vectors of %d, prompt_eval_count=%d", len(resp.Embeddings), len(resp.Embeddings[0]), resp.PromptEvalCount)
	})

	t.Run("ps", func(t *testing.T) {
		ps, err := c.ListRunning(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps.Models) != 1 || ps.Models[0].Name != "tiny:latest" {
			t.Fatalf("/api/ps = %+v, want tiny:latest loaded", ps.Models)
		}
		m := ps.Models[0]
		t.Logf("ps: size=%d size_vram=%d context_length=%d expires_at=%v", m.Size, m.SizeVRAM, m.ContextLength, m.ExpiresAt)
		if m.Size <= 0 || m.SizeVRAM < 0 || m.SizeVRAM > m.Size {
			t.Errorf("ps sizes: size=%d size_vram=%d", m.Size, m.SizeVRAM)
		}
	})

	t.Run("raw http", func(t *testing.T) {
		resp, err := http.Get(r.URL + "/api/version")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct{ Version string }
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		if v.Version != strings.TrimPrefix(Version, "v") {
			t.Errorf("/api/version = %q, want %q", v.Version, strings.TrimPrefix(Version, "v"))
		}
	})
}

// TestEmbeddingModel creates an embedding-only tiny model (mean pooling).
func TestEmbeddingModel(t *testing.T) {
	r := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := r.CreateTinyWith(ctx, "tiny-embed:latest", CreateOptions{
		Model: tinymodel.Options{PoolingType: 1, Seed: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.Client().Embed(ctx, &api.EmbedRequest{Model: "tiny-embed", Input: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Embeddings) != 1 || len(resp.Embeddings[0]) != 64 {
		t.Fatalf("embeddings = %d vectors, want one of length 64", len(resp.Embeddings))
	}
	// An embedding-only model refuses chat.
	stream := false
	err = r.Client().Chat(ctx, &api.ChatRequest{
		Model:    "tiny-embed",
		Messages: []api.Message{{Role: "user", Content: "hi"}},
		Stream:   &stream,
	}, func(api.ChatResponse) error { return nil })
	if err == nil {
		t.Error("chat with an embedding-only model succeeded, want an error")
	} else {
		t.Logf("chat with embedding model: %v", err)
	}
}
