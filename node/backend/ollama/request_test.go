package ollama

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// FuzzChatRequest holds plainChatJSON to encoding/json's exact bytes
// whenever it takes a request.
func FuzzChatRequest(f *testing.F) {
	f.Add("llama3.2:1b", "user", "hi <b>&</b>", "system", "be \"brief\"\n", 0.7, int64(64), true, "\n\n", int64(3e11))
	f.Add("", "", "", "tool", "\xff\u2028", math.NaN(), int64(-1), false, "", int64(-1))
	f.Add("m", "assistant", "x", "user", "y", 1e-9, int64(0), true, "stop", int64(0))
	f.Fuzz(func(t *testing.T, model, role1, content1, role2, content2 string, temp float64, num int64, stream bool, stop string, keep int64) {
		req := &api.ChatRequest{
			Model:     model,
			Messages:  []api.Message{{Role: role1, Content: content1}, {Role: role2, Content: content2}},
			Stream:    &stream,
			KeepAlive: &api.Duration{Duration: time.Duration(keep)},
			Options:   map[string]any{"temperature": temp, "num_predict": int(num), "stop": []string{stop}, "top_k": stop, "flag": stream},
		}
		if num%3 == 0 {
			req.Stream, req.KeepAlive, req.Options, req.Messages = nil, nil, nil, nil
		}
		if num%5 == 1 {
			req.Truncate, req.Shift = &stream, &stream
		}
		got, ok := plainChatJSON(req)
		want, err := json.Marshal(req)
		switch {
		case !ok && err == nil && !math.IsNaN(temp) && !math.IsInf(temp, 0) && (temp == 0 || math.Abs(temp) >= 1e-6 && math.Abs(temp) < 1e21):
			t.Fatalf("declined a plain request: %s", want)
		case ok && err != nil:
			t.Fatalf("wrote %s where encoding/json fails: %v", got, err)
		case ok && string(got) != string(want):
			t.Fatalf("wrote\n%s\nencoding/json writes\n%s", got, want)
		}
	})
}

// TestPlainChatJSONTakesWhatTheAPIsSend: the requests sovra's two chat
// APIs send in the common case take the fast path, and the ones it must
// leave to encoding/json do.
func TestPlainChatJSONTakesWhatTheAPIsSend(t *testing.T) {
	temp, maxTokens := 0.2, 64
	fromOpenAI, err := openai.FromChatRequest(openai.ChatCompletionRequest{
		Model:       "llama3.2:1b",
		Messages:    []openai.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hello"}},
		Temperature: &temp,
		MaxTokens:   &maxTokens,
		Stop:        []any{"\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	for _, tc := range []struct {
		name string
		req  *api.ChatRequest
		fast bool
	}{
		{"from /v1", fromOpenAI, true},
		{"native", &api.ChatRequest{Model: "m", Messages: []api.Message{{Role: "user", Content: "hi"}}, Stream: &yes, Options: map[string]any{"temperature": 0.1, "seed": float64(3)}}, true},
		{"pinned", &api.ChatRequest{Model: "m", Messages: []api.Message{{Role: "user", Content: "hi"}}, KeepAlive: &api.Duration{Duration: -1}}, true},
		{"thinking", &api.ChatRequest{Model: "m", Think: &api.ThinkValue{Value: true}}, false},
		{"images", &api.ChatRequest{Model: "m", Messages: []api.Message{{Role: "user", Images: []api.ImageData{{1}}}}}, false},
		{"tool calls", &api.ChatRequest{Model: "m", Messages: []api.Message{{Role: "assistant", ToolCalls: []api.ToolCall{{}}}}}, false},
		{"format", &api.ChatRequest{Model: "m", Format: json.RawMessage(`"json"`)}, false},
		{"map option", &api.ChatRequest{Model: "m", Options: map[string]any{"x": map[string]any{}}}, false},
		{"huge number", &api.ChatRequest{Model: "m", Options: map[string]any{"x": 1e300}}, false},
	} {
		got, ok := plainChatJSON(tc.req)
		if ok != tc.fast {
			t.Errorf("%s: fast path %v, want %v", tc.name, ok, tc.fast)
			continue
		}
		want, err := json.Marshal(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if ok && string(got) != string(want) {
			t.Errorf("%s: wrote\n%s\nencoding/json writes\n%s", tc.name, got, want)
		}
	}
}

func BenchmarkChatRequestJSON(b *testing.B) {
	temp := 0.7
	req, err := openai.FromChatRequest(openai.ChatCompletionRequest{
		Model:       "llama3.2:1b",
		Messages:    []openai.Message{{Role: "system", Content: words(150)}, {Role: "user", Content: words(56)}},
		Temperature: &temp,
	})
	if err != nil {
		b.Fatal(err)
	}
	req.KeepAlive = &api.Duration{Duration: -1}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := plainChatJSON(req); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func words(n int) string {
	b := make([]byte, 0, n*6)
	for i := range n {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, "word"...)
	}
	return string(b)
}
