package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/backend/ollama"
)

// TestBackendConformance runs the same backend-facing checks, through
// sovra's Ollama adapter, against the simulator and the real Ollama. The
// simulator is trusted for a behaviour only where both pass.
func TestBackendConformance(t *testing.T) {
	// The simulator paces its tokens so that a cancellation lands mid-stream,
	// as it does with the real server.
	sim := func(t *testing.T) target {
		return simTarget(t, ollamasim.Config{TokensPerSecond: 500, ResponseTokens: 100})
	}
	eachTargetWith(t, sim, func(t *testing.T, tg target) {
		be, err := ollama.New(tg.ollamaURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range conformanceChecks {
			t.Run(c.name, func(t *testing.T) { c.run(t, testCtx(t), be, tg) })
		}
	})
}

var conformanceChecks = []struct {
	name string
	run  func(t *testing.T, ctx context.Context, be backend.Backend, tg target)
}{
	{"unknown model is not found", func(t *testing.T, ctx context.Context, be backend.Backend, tg target) {
		err := be.Chat(ctx, chatReq("nope-model:1b", 4, true), func(api.ChatResponse) error { return nil })
		if !errors.Is(err, backend.ErrModelNotFound) {
			t.Errorf("chat: %v", err)
		}
		if _, err := be.Show(ctx, &api.ShowRequest{Model: "nope-model:1b"}); !errors.Is(err, backend.ErrModelNotFound) {
			t.Errorf("show: %v", err)
		}
		if err := be.Delete(ctx, &api.DeleteRequest{Model: "nope-model:1b"}); !errors.Is(err, backend.ErrModelNotFound) {
			t.Errorf("delete: %v", err)
		}
	}},
	{"names Ollama's parser refuses", func(t *testing.T, ctx context.Context, be backend.Backend, tg target) {
		for _, c := range refusedNames {
			t.Run(c.name, func(t *testing.T) {
				status, msg := ollamaCall(t, ctx, tg.ollamaURL, c.method, c.path, c.body)
				if status != c.status || msg != c.msg {
					t.Errorf("%d %q, want %d %q", status, msg, c.status, c.msg)
				}
			})
		}
	}},
	{"streamed chat ends with one done message counting the tokens", func(t *testing.T, ctx context.Context, be backend.Backend, tg target) {
		var got []api.ChatResponse
		if err := be.Chat(ctx, chatReq(tg.chat, 6, true), func(r api.ChatResponse) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		last := got[len(got)-1]
		for _, r := range got[:len(got)-1] {
			if r.Done {
				t.Fatal("done before the last message")
			}
		}
		if !last.Done || last.DoneReason != "length" || last.EvalCount != 6 || last.PromptEvalCount == 0 || len(got) < 2 {
			t.Errorf("%d messages, last %+v", len(got), last)
		}
	}},
	{"non-streamed chat is one message", func(t *testing.T, ctx context.Context, be backend.Backend, tg target) {
		var got []api.ChatResponse
		if err := be.Chat(ctx, chatReq(tg.chat, 5, false), func(r api.ChatResponse) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].Done || got[0].Message.Content == "" || got[0].EvalCount != 5 {
			t.Errorf("got %+v", got)
		}
	}},
	{"same seed gives the same answer", func(t *testing.T, ctx context.Context, be backend.Backend, tg target) {
		answer := func() string {
			var s string
			req := chatReq(tg.chat, 8, false)
			req.Options["seed"], req.Options["temperature"] = 42, 0
			if err := be.Chat(ctx, req, func(r api.ChatResponse) error { s = r.Message.Content; return nil }); err != nil {
				t.Fatal(err)
			}
			return s
		}
		if a, b := answer(), answer(); a != b {
			t.Errorf("%q != %q", a, b)
		}
	}},
	{"generate", func(t *testing.T, ctx context.Context, be backend.Backend, tg target) {
		no := false
		var r api.GenerateResponse
		req := &api.GenerateRequest{Model: tg.chat, Prompt: "Once", Stream: &no, Options: map[string]any{"num_predict": 4}}
		if err := be.Generate(ctx, req, func(g api.GenerateResponse) error { r = g; return nil }); err != nil {
			t.Fatal(err)
		}
		if !r.Done || r.Response == "" || r.EvalCount != 4 {
			t.Errorf("%+v", r)
		}
	}},
	{"embeddings are unit vectors", func(t *testing.T, ctx context.Context, be backend.Backend, tg target) {
		r, err := be.Embed(ctx, &api.EmbedRequest{Model: tg.embed, Input: []string{"one", "two"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Embeddings) != 2 {
			t.Fatalf("%d vectors", len(r.Embeddings))
		}
		for _, v := range r.Embeddings {
			var sum float64
			for _, x := range v {
				sum += float64(x) * float64(x)
			}
			if len(v) != tg.embedDims || math.Abs(math.Sqrt(sum)-1) > 1e-3 {
				t.Errorf("%d dims, norm %f", len(v), math.Sqrt(sum))
			}
		}
	}},
	{"preload, list running, unload", func(t *testing.T, ctx context.Context, be backend.Backend, tg target) {
		load := func(keep *api.Duration) string {
			var reason string
			req := &api.GenerateRequest{Model: tg.chat, KeepAlive: keep}
			if err := be.Generate(ctx, req, func(r api.GenerateResponse) error { reason = r.DoneReason; return nil }); err != nil {
				t.Fatal(err)
			}
			return reason
		}
		if r := load(&api.Duration{Duration: -1}); r != "load" {
			t.Errorf("preload done_reason %q", r)
		}
		if !running(t, ctx, be, tg.chat) {
			t.Fatal("/api/ps does not show the preloaded model")
		}
		if r := load(&api.Duration{}); r != "unload" {
			t.Errorf("unload done_reason %q", r)
		}
		for running(t, ctx, be, tg.chat) { // Ollama unloads in the background
			if ctx.Err() != nil {
				t.Fatal("/api/ps still shows the unloaded model")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}},
	{"cancelling stops a stream", func(t *testing.T, ctx context.Context, be backend.Backend, tg target) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		n := 0
		err := be.Chat(ctx, chatReq(tg.chat, 500, true), func(api.ChatResponse) error {
			if n++; n == 2 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v after %d chunks", err, n)
		}
	}},
}

// refusedNames are Ollama v0.17.4's answers, route by route, to a model
// name its parser refuses: some are server errors, which sovra must never
// provoke (it refuses such names itself).
var refusedNames = []struct {
	name, method, path, body string
	status                   int
	msg                      string
}{
	{"show", "POST", "/api/show", `{"model":"../../etc/passwd"}`, 500, "unqualified name: ../../etc/passwd:latest"},
	{"show with a space", "POST", "/api/show", `{"model":"a b"}`, 500, "unqualified name: registry.ollama.ai/library/a b:latest"},
	{"chat", "POST", "/api/chat", `{"model":"../../etc/passwd","messages":[{"role":"user","content":"x"}]}`, 400, "model is required"},
	{"generate", "POST", "/api/generate", `{"model":"../../etc/passwd","prompt":"x"}`, 404, "model '../../etc/passwd' not found"},
	{"embed", "POST", "/api/embed", `{"model":"../../etc/passwd","input":"x"}`, 500, "unqualified name: ../../etc/passwd:latest"},
	{"embed without a model", "POST", "/api/embed", `{"input":"x"}`, 500, "unqualified name: registry.ollama.ai/library/!MISSING!:latest"},
	{"delete", "DELETE", "/api/delete", `{"model":"../../etc/passwd"}`, 400, `name "../../etc/passwd" is invalid`},
	{"pull", "POST", "/api/pull", `{"model":"../../etc/passwd"}`, 400, "invalid model name"},
}

// ollamaCall sends one raw request to an Ollama and returns the status
// and the error message of the answer.
func ollamaCall(t *testing.T, ctx context.Context, base, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}

func chatReq(model string, maxTokens int, stream bool) *api.ChatRequest {
	return &api.ChatRequest{
		Model:    model,
		Messages: []api.Message{{Role: "user", Content: "Tell me about the sea."}},
		Stream:   &stream,
		Options:  map[string]any{"num_predict": maxTokens},
	}
}

// running reports whether /api/ps lists the model.
func running(t *testing.T, ctx context.Context, be backend.Backend, model string) bool {
	t.Helper()
	ps, err := be.ListRunning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ps.Models {
		if m.Name == model || m.Name == model+":latest" {
			return true
		}
	}
	return false
}
