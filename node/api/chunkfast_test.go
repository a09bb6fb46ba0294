package api

import (
	"encoding/json"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// slowTokenChunk is the general path's event for a chunk.
func slowTokenChunk(t testing.TB, id string, r api.ChatResponse, created int64) []byte {
	oc := openai.ToChunk(id, r, false)
	ch := chatChunk{ID: oc.Id, Object: oc.Object, Created: created, Model: oc.Model, SystemFingerprint: oc.SystemFingerprint}
	for _, c := range oc.Choices {
		ch.Choices = append(ch.Choices, chunkChoice{Index: c.Index, Delta: withReasoning(c.Delta), FinishReason: c.FinishReason, Logprobs: c.Logprobs})
	}
	b, err := json.Marshal(ch)
	if err != nil {
		t.Fatal(err)
	}
	return sseFrame("", b)
}

// FuzzTokenChunk: a text-only chunk written by appending is the same
// bytes as the general path's, for any id, model and text.
func FuzzTokenChunk(f *testing.F) {
	for _, s := range []string{"Hello", "", " world", "a\"b\\c", "<tag>&amp;", "\n\t\r\b\f\x00\x1f\x7f", "héllo ✓ 日本", "\u2028\u2029", "\xff\xfe bad", "a\xc3", "\xed\xa0\x80"} {
		f.Add("chatcmpl-1", "llama3.2:1b", s, int64(1764806400))
	}
	f.Fuzz(func(t *testing.T, id, model, content string, created int64) {
		r := api.ChatResponse{Model: model, Message: api.Message{Role: "assistant", Content: content}}
		if !plainToken(r) {
			t.Fatal("a text-only chunk is not plain")
		}
		fast := appendTokenChunk(nil, id, model, created, content)
		if slow := slowTokenChunk(t, id, r, created); string(fast) != string(slow) {
			t.Fatalf("fast and general paths differ:\nfast    %q\ngeneral %q", fast, slow)
		}
	})
}

func TestPlainToken(t *testing.T) {
	text := api.Message{Role: "assistant", Content: "hi"}
	for _, tc := range []struct {
		name string
		r    api.ChatResponse
		want bool
	}{
		{"text", api.ChatResponse{Message: text}, true},
		{"done", api.ChatResponse{Message: text, Done: true}, false},
		{"done reason", api.ChatResponse{Message: text, DoneReason: "stop"}, false},
		{"thinking", api.ChatResponse{Message: api.Message{Role: "assistant", Thinking: "hmm"}}, false},
		{"tool call", api.ChatResponse{Message: api.Message{Role: "assistant", ToolCalls: []api.ToolCall{{Function: api.ToolCallFunction{Name: "f"}}}}}, false},
		{"logprobs", api.ChatResponse{Message: text, Logprobs: []api.Logprob{{TokenLogprob: api.TokenLogprob{Token: "hi"}}}}, false},
	} {
		if got := plainToken(tc.r); got != tc.want {
			t.Errorf("%s: plain %v, want %v", tc.name, got, tc.want)
		}
	}
}
