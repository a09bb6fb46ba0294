package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/ollama/ollama/openai"
)

// sdkBodies are plain chat bodies as the OpenAI SDKs send them: Python's
// (its keys in the SDK's order, with httpx's compact separators and with
// the spaced ones of older versions) and Node's (the caller's order).
var sdkBodies = []string{
	`{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hi"}],"model":"llama3","max_tokens":128,"stream":true,"stream_options":{"include_usage":true},"temperature":0.7}`,
	`{"messages": [{"role": "user", "content": "Say hi"}], "model": "llama3", "max_completion_tokens": 64, "seed": 7, "stop": ["\n\n"], "top_p": 0.9}`,
	`{"model":"llama3","messages":[{"role":"developer","content":"You are terse."},{"role":"user","content":"Say hi"},{"role":"assistant","content":"Hi."},{"role":"user","content":"Again"}],"stream":true,"temperature":0,"frequency_penalty":0.5,"presence_penalty":-0.5,"stop":"END"}`,
	openaiBody,
}

// plainSeeds are plain requests that only encoding/json decodes (fields
// the fast decoder leaves to it), and near misses of them.
var plainSeeds = []string{
	`{"model":"m","messages":[{"role":"assistant","content":"a","reasoning":"r","name":"n","tool_call_id":"c"}],"tools":[],"stop":["a",1,"b"],"seed":1,"frequency_penalty":0.5,"presence_penalty":-1,"top_p":0.5,"max_tokens":3,"stream":true}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[]}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"stop":5}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":""}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":false,"top_logprobs":0}`,
	`{"model":"m","messages":[{"role":"tool","content":"1","name":"f"}]}`,
	`{"model":"m","messages":[{"role":"System","content":"x"},{"role":"TOOL","content":"y","tool_call_id":"c"}]}`,
	`{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[]}],"_debug_render_only":true}`,
}

// FuzzPlainChatConversion holds plainChat to openai.FromChatRequest:
// whenever it takes a request, decoded as the server decodes it, its
// translation is FromChatRequest's, both as decoded and as toOllama
// converts it (checked and prepared).
func FuzzPlainChatConversion(f *testing.F) {
	for _, seeds := range [][]string{badSeeds, chatSeeds, decodeSeeds, sdkBodies, plainSeeds} {
		addSeeds(f, seeds...)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxFuzzBody {
			return
		}
		var req chatRequest
		if decodeJSON(body, fuzzLimits, &req) != nil {
			return
		}
		checkPlainChat(t, body, &req.ChatCompletionRequest)
		if req.validate(fuzzTokenLimit) != nil {
			return
		}
		req.prepare()
		checkPlainChat(t, body, &req.ChatCompletionRequest)
	})
}

func checkPlainChat(t *testing.T, body []byte, r *openai.ChatCompletionRequest) {
	t.Helper()
	fast, ok := plainChat(r)
	if !ok {
		return
	}
	want, err := openai.FromChatRequest(*r)
	if err != nil {
		t.Fatalf("body %q: plainChat took a request FromChatRequest refuses: %v", body, err)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("body %q:\nplainChat       %#v\noptions %#v\nFromChatRequest %#v\noptions %#v", body, fast, fast.Options, want, want.Options)
	}
}

// TestPlainChatTakesSDKBodies: the plain bodies the SDKs send are
// translated by plainChat (so that it cannot quietly fall out of use),
// as FromChatRequest translates them, and the others are left to
// FromChatRequest. plainChat's result is told by its Stream, which
// points into the request (FromChatRequest's points into its own copy).
func TestPlainChatTakesSDKBodies(t *testing.T) {
	notPlain := []string{
		chatSeeds[1], // content parts
		chatSeeds[2], // tool calls, a tool message, tools
		chatSeeds[3], // response_format
		chatSeeds[4], // reasoning_effort
		`{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":2}`,
		`{"model":"m","messages":[{"role":"tool","content":"1","name":"f"}]}`,
	}
	for _, tc := range []struct {
		bodies []string
		plain  bool
	}{{sdkBodies, true}, {notPlain, false}} {
		for _, body := range tc.bodies {
			var req chatRequest
			if err := decodeJSON([]byte(body), DefaultConfig().jsonLimits(), &req); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			out, err := req.toOllama(0)
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if took := out.Stream == &req.Stream; took != tc.plain {
				t.Errorf("%s: translated by plainChat: %v, want %v", body, took, tc.plain)
			}
			want, err := openai.FromChatRequest(req.ChatCompletionRequest)
			if err != nil || !reflect.DeepEqual(out, want) {
				t.Errorf("%s:\ntranslated to   %#v %#v\nFromChatRequest %#v %#v (%v)", body, out, out.Options, want, want.Options, err)
			}
		}
	}
}

// typicalChatBody is a chat of about 1 KB: a system prompt, a question
// and an earlier answer, a temperature, max_tokens and stream.
func typicalChatBody() []byte {
	msgs, _ := json.Marshal([]map[string]string{
		{"role": "system", "content": strings.TrimSpace(strings.Repeat("You are a careful assistant who answers in plain words and says so when unsure. ", 5))},
		{"role": "user", "content": strings.TrimSpace(strings.Repeat("How do the tides depend on the moon and the sun? ", 4))},
		{"role": "assistant", "content": strings.TrimSpace(strings.Repeat("Mostly on the moon's pull, and the sun's adds to it or works against it. ", 3))},
	})
	return []byte(`{"model":"llama3.2:1b","messages":` + string(msgs) + `,"stream":true,"temperature":0.7,"max_tokens":256}`)
}

func BenchmarkChatConversion(b *testing.B) {
	body := typicalChatBody()
	var req chatRequest
	if err := decodeJSON(body, DefaultConfig().jsonLimits(), &req); err != nil {
		b.Fatal(err)
	}
	if _, ok := plainChat(&req.ChatCompletionRequest); !ok {
		b.Fatalf("the body (%d bytes) is not plain", len(body))
	}
	b.Run("FromChatRequest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := openai.FromChatRequest(req.ChatCompletionRequest); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plainChat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			plainChat(&req.ChatCompletionRequest)
		}
	})
}
