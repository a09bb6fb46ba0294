package api

import (
	"encoding/json"
	"testing"
	"time"

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

// TestPlainShapes: which chunks and whole answers the appending
// encoders take (a token chunk: text only, not the last; a completion:
// text only, with its reason).
func TestPlainShapes(t *testing.T) {
	text := api.Message{Role: "assistant", Content: "hi"}
	for _, tc := range []struct {
		name              string
		r                 api.ChatResponse
		token, completion bool
	}{
		{"text", api.ChatResponse{Message: text}, true, true},
		{"done", api.ChatResponse{Message: text, Done: true}, false, true},
		{"done reason", api.ChatResponse{Message: text, Done: true, DoneReason: "stop"}, false, true},
		{"thinking", api.ChatResponse{Message: api.Message{Role: "assistant", Content: "x", Thinking: "hmm"}}, false, false},
		{"tool call", api.ChatResponse{Message: api.Message{Role: "assistant", ToolCalls: []api.ToolCall{{Function: api.ToolCallFunction{Name: "f"}}}}}, false, false},
		{"logprobs", api.ChatResponse{Message: text, Logprobs: []api.Logprob{{TokenLogprob: api.TokenLogprob{Token: "hi"}}}}, false, false},
	} {
		if got := plainToken(tc.r); got != tc.token {
			t.Errorf("%s: plain token %v, want %v", tc.name, got, tc.token)
		}
		if got := plainCompletion(tc.r); got != tc.completion {
			t.Errorf("%s: plain completion %v, want %v", tc.name, got, tc.completion)
		}
	}
}

// FuzzNativeLine: a plain message of Ollama's own chat API written by
// appending is the same bytes as encoding/json's.
func FuzzNativeLine(f *testing.F) {
	for _, s := range []string{"Hello", "", "a\"b\\c", "<tag>&amp;", "\n\t\x00\x1f", "héllo ✓", "\u2028", "\xff bad"} {
		f.Add("llama3.2:1b", "assistant", s, int64(1764806400123456789), int16(0), false, "", int64(0), 0)
	}
	f.Add("m", "ASSISTANT", "x", int64(-62135596800000000), int16(90), true, "stop", int64(123456789), 42)
	f.Add("m", "", "x", int64(1), int16(-330), true, "", int64(-5), -1)
	f.Add("m", "assistant", "x", int64(1), int16(1800), false, "", int64(0), 0) // a zone 30 hours off: encoding/json refuses it
	f.Fuzz(func(t *testing.T, model, role, content string, nanos int64, offsetMin int16, done bool, reason string, dur int64, count int) {
		at := time.Unix(0, nanos).In(time.FixedZone("", int(offsetMin)*60))
		r := api.ChatResponse{Model: model, CreatedAt: at, Message: api.Message{Role: role, Content: content}, Done: done, DoneReason: reason}
		r.Metrics = api.Metrics{TotalDuration: time.Duration(dur), LoadDuration: time.Duration(dur / 3), PromptEvalCount: count,
			PromptEvalDuration: time.Duration(dur / 5), EvalCount: count * 2, EvalDuration: time.Duration(dur / 7)}
		want, err := json.Marshal(r)
		if err != nil {
			if plainNativeChat(r) {
				t.Fatalf("encoding/json refuses a message taken as plain: %v", err)
			}
			return
		}
		got, err := nativeLine(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want)+"\n" {
			t.Fatalf("plain %v: fast and general paths differ:\nfast    %q\ngeneral %q", plainNativeChat(r), got, want)
		}
	})
}

func TestPlainNativeChat(t *testing.T) {
	base := api.ChatResponse{Model: "m", CreatedAt: time.Unix(1764806400, 0), Message: api.Message{Role: "assistant", Content: "hi"}}
	if !plainNativeChat(base) {
		t.Fatal("a text line is not plain")
	}
	for name, change := range map[string]func(*api.ChatResponse){
		"remote model":   func(r *api.ChatResponse) { r.RemoteModel = "x" },
		"remote host":    func(r *api.ChatResponse) { r.RemoteHost = "x" },
		"debug info":     func(r *api.ChatResponse) { r.DebugInfo = &api.DebugInfo{} },
		"logprobs":       func(r *api.ChatResponse) { r.Logprobs = []api.Logprob{{}} },
		"images":         func(r *api.ChatResponse) { r.Message.Images = []api.ImageData{} },
		"tool name":      func(r *api.ChatResponse) { r.Message.ToolName = "f" },
		"tool call id":   func(r *api.ChatResponse) { r.Message.ToolCallID = "c" },
		"thinking":       func(r *api.ChatResponse) { r.Message.Thinking = "t" },
		"year past 9999": func(r *api.ChatResponse) { r.CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"zone 30 h off":  func(r *api.ChatResponse) { r.CreatedAt = r.CreatedAt.In(time.FixedZone("", 30*3600)) },
	} {
		r := base
		change(&r)
		if plainNativeChat(r) {
			t.Errorf("%s: taken as plain", name)
		}
	}
}

// FuzzCompletion: a text-only answer's completion object written by
// appending is the same bytes as encoding/json's.
func FuzzCompletion(f *testing.F) {
	f.Add("chatcmpl-1", "llama3.2:1b", "assistant", "Hello <world> & \"you\"\n", "stop", int64(1764806400), 12, 34)
	f.Add("", "", "", "\xff\u2028", "", int64(-1), 0, -5)
	f.Fuzz(func(t *testing.T, id, model, role, content, reason string, created int64, prompt, eval int) {
		r := api.ChatResponse{Model: model, CreatedAt: time.Unix(created, 0), Message: api.Message{Role: role, Content: content}, Done: true, DoneReason: reason,
			Metrics: api.Metrics{PromptEvalCount: prompt, EvalCount: eval}}
		if !plainCompletion(r) {
			t.Fatal("a text-only answer is not plain")
		}
		s := &Server{ids: &idSource{}}
		slow, err := json.Marshal(s.toCompletion(id, r))
		if err != nil {
			t.Fatal(err)
		}
		if fast := appendCompletion(nil, id, r); string(fast) != string(slow) {
			t.Fatalf("fast and general paths differ:\nfast    %s\ngeneral %s", fast, slow)
		}
	})
}
