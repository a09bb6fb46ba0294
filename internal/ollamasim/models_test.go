package ollamasim_test

import (
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
)

func TestTagsShowVersion(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{Version: "9.9.9"})
	c := s.Client()
	ctx := testCtx(t)

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list.Models {
		names = append(names, m.Name)
		if m.Size <= 0 || m.Digest == "" || m.Details.Family == "" || m.ModifiedAt.IsZero() {
			t.Errorf("incomplete entry %+v", m)
		}
	}
	want := []string{"llama3.2:1b", "deepseek-r1:1.5b", "nomic-embed-text:latest"}
	if !slices.Equal(names, want) {
		t.Errorf("tags %v, want %v", names, want)
	}

	tests := []struct {
		model    string
		arch     string
		caps     []string
		embedLen float64
	}{
		{"llama3.2:1b", "llama", []string{"completion", "tools"}, 2048},
		{"deepseek-r1:1.5b", "qwen2", []string{"completion", "tools", "thinking"}, 1536},
		{"nomic-embed-text", "nomic-bert", []string{"embedding"}, 768},
	}
	for _, tc := range tests {
		t.Run("show "+tc.model, func(t *testing.T) {
			resp, err := c.Show(ctx, &api.ShowRequest{Model: tc.model})
			if err != nil {
				t.Fatal(err)
			}
			var caps []string
			for _, c := range resp.Capabilities {
				caps = append(caps, string(c))
			}
			if !slices.Equal(caps, tc.caps) {
				t.Errorf("capabilities %v, want %v", caps, tc.caps)
			}
			if resp.ModelInfo["general.architecture"] != tc.arch {
				t.Errorf("architecture %v, want %s", resp.ModelInfo["general.architecture"], tc.arch)
			}
			if resp.ModelInfo[tc.arch+".embedding_length"] != tc.embedLen {
				t.Errorf("embedding_length %v, want %v", resp.ModelInfo[tc.arch+".embedding_length"], tc.embedLen)
			}
			if _, ok := resp.ModelInfo[tc.arch+".context_length"].(float64); !ok {
				t.Errorf("context_length missing: %v", resp.ModelInfo)
			}
			// What a catalog entry is built from, as real Ollama writes it.
			for _, k := range []string{"general.parameter_count", "general.file_type", tc.arch + ".block_count",
				tc.arch + ".attention.head_count", tc.arch + ".attention.head_count_kv", tc.arch + ".attention.key_length"} {
				if v, ok := resp.ModelInfo[k].(float64); !ok || v <= 0 && k != "general.file_type" {
					t.Errorf("%s is %v, want a number", k, resp.ModelInfo[k])
				}
			}
		})
	}

	if v, err := c.Version(ctx); err != nil || v != "9.9.9" {
		t.Errorf("version %q, %v; want 9.9.9", v, err)
	}
	if err := c.Heartbeat(ctx); err != nil {
		t.Errorf("heartbeat: %v", err)
	}
	if code, _, body := rawDo(t, s, http.MethodGet, "/", ""); code != 200 || body != "Ollama is running" {
		t.Errorf("GET / = %d %q", code, body)
	}
}

func TestDelete(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	c := s.Client()
	ctx := testCtx(t)
	steps := []struct {
		name     string
		do       func() error
		wantCode int
	}{
		{"delete present", func() error { return c.Delete(ctx, &api.DeleteRequest{Model: chatModel}) }, 0},
		{"delete again", func() error { return c.Delete(ctx, &api.DeleteRequest{Model: chatModel}) }, 404},
		{"chat with deleted", func() error {
			_, err := chat(ctx, c, &api.ChatRequest{Model: chatModel, Messages: userMsg("hi")})
			return err
		}, 404},
		{"delete never existed", func() error { return c.Delete(ctx, &api.DeleteRequest{Model: "nope:1b"}) }, 404},
		{"delete without name", func() error { return c.Delete(ctx, &api.DeleteRequest{}) }, 400},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := st.do()
			if statusOf(err) != st.wantCode || (st.wantCode == 0) != (err == nil) {
				t.Fatalf("err %v, want status %d", err, st.wantCode)
			}
			if st.wantCode == 404 && !strings.Contains(errorText(err), "not found") {
				t.Errorf("error %q, want a not found message", errorText(err))
			}
		})
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Models {
		if m.Name == chatModel {
			t.Error("deleted model still listed")
		}
	}
}

// psEntry returns a model's /api/ps entry, if loaded.
func psEntry(t *testing.T, c *api.Client, name string) (api.ProcessModelResponse, bool) {
	t.Helper()
	ps, err := c.ListRunning(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ps.Models {
		if m.Name == name {
			return m, true
		}
	}
	return api.ProcessModelResponse{}, false
}

func TestKeepAlive(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	c := s.Client()
	dur := func(d time.Duration) *api.Duration { return &api.Duration{Duration: d} }
	tests := []struct {
		name       string
		msgs       []api.Message
		keepAlive  *api.Duration
		wantReason string
		wantLoaded bool
		minExpiry  time.Duration // lower bound of expires_at - now
		maxExpiry  time.Duration
	}{
		{"preload", nil, nil, "load", true, 4 * time.Minute, 6 * time.Minute},
		{"preload for 10m", nil, dur(10 * time.Minute), "load", true, 9 * time.Minute, 11 * time.Minute},
		{"pin with -1", nil, dur(-1), "load", true, 100 * 365 * 24 * time.Hour, math.MaxInt64},
		{"unload", nil, dur(0), "unload", false, 0, 0},
		{"answer then unload", userMsg("hi"), dur(0), "stop", false, 0, 0},
		{"answer and stay", userMsg("hi"), dur(time.Hour), "stop", true, 59 * time.Minute, 61 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resps, err := chat(testCtx(t), c, &api.ChatRequest{Model: chatModel, Messages: tc.msgs, KeepAlive: tc.keepAlive})
			if err != nil {
				t.Fatal(err)
			}
			if final := resps[len(resps)-1]; !final.Done || final.DoneReason != tc.wantReason {
				t.Fatalf("final %+v, want done with %q", final, tc.wantReason)
			}
			lastRecord(t, s, "/api/chat") // wait until the request has ended
			entry, loaded := psEntry(t, c, chatModel)
			if loaded != tc.wantLoaded {
				t.Fatalf("loaded %v, want %v", loaded, tc.wantLoaded)
			}
			if !loaded {
				return
			}
			if entry.SizeVRAM != 2_040_109_465 || entry.Size != entry.SizeVRAM || entry.ContextLength == 0 {
				t.Errorf("ps entry %+v, want the model's VRAM size", entry)
			}
			if left := time.Until(entry.ExpiresAt); left < tc.minExpiry || left > tc.maxExpiry {
				t.Errorf("expires in %v, want between %v and %v", left, tc.minExpiry, tc.maxExpiry)
			}
		})
	}
}

func TestLoadCounts(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{LoadDuration: 20 * time.Millisecond})
	c := s.Client()
	ctx := testCtx(t)
	resps, err := generate(ctx, c, &api.GenerateRequest{Model: chatModel})
	if err != nil || len(resps) != 1 || resps[0].DoneReason != "load" {
		t.Fatalf("preload: %v %+v", err, resps)
	}
	_, _, final := mustChat(t, c, &api.ChatRequest{Model: chatModel, Messages: userMsg("hi")})
	if final.LoadDuration >= 20*time.Millisecond {
		t.Errorf("load_duration %v after preload, want a warm start", final.LoadDuration)
	}
	if _, err := generate(ctx, c, &api.GenerateRequest{Model: chatModel, KeepAlive: &api.Duration{}}); err != nil {
		t.Fatal(err)
	}
	_, _, final = mustChat(t, c, &api.ChatRequest{Model: chatModel, Messages: userMsg("hi")})
	if final.LoadDuration < 20*time.Millisecond {
		t.Errorf("load_duration %v after unload, want a cold start", final.LoadDuration)
	}
	if got := s.Stats().Model(chatModel).Loads; got != 2 {
		t.Errorf("%d loads, want 2", got)
	}
}

func TestGenerate(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	c := s.Client()
	tests := []struct {
		name         string
		model        string
		stream       *bool
		wantThinking bool
	}{
		{"streamed", chatModel, nil, false},
		{"single", chatModel, boolPtr(false), false},
		{"thinking model", thinkModel, nil, true},
	}
	var ref string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resps, err := generate(testCtx(t), c, &api.GenerateRequest{Model: tc.model, Prompt: "Why?", System: "Be brief.", Stream: tc.stream})
			if err != nil {
				t.Fatal(err)
			}
			var text, thinking string
			for _, r := range resps {
				text += r.Response
				thinking += r.Thinking
			}
			final := resps[len(resps)-1]
			if !final.Done || final.DoneReason != "stop" || len(final.Context) == 0 || final.EvalCount == 0 {
				t.Errorf("final %+v, want done, stop, context and metrics", final)
			}
			if (thinking != "") != tc.wantThinking || text == "" {
				t.Errorf("thinking %q text %q, want thinking=%v", thinking, text, tc.wantThinking)
			}
			if tc.model == chatModel {
				if ref == "" {
					ref = text
				} else if text != ref {
					t.Errorf("text %q differs from %q", text, ref)
				}
			}
		})
	}
}

func TestKeepAliveForever(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{KeepAlive: -1})
	c := s.Client()
	if _, err := chat(testCtx(t), c, &api.ChatRequest{Model: chatModel}); err != nil {
		t.Fatal(err)
	}
	entry, ok := psEntry(t, c, chatModel)
	if !ok || time.Until(entry.ExpiresAt) < 100*365*24*time.Hour {
		t.Errorf("ps entry %+v (loaded %v), want pinned", entry, ok)
	}
}
