package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/ollama/ollama/anthropic"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// Fuzz targets of the request decoders and their translation to Ollama's
// requests. Each decodes a body as its route does (JSON limits first),
// then checks and translates it. Whatever the body:
//   - nothing panics;
//   - a refusal is an API error with a 4xx status, a short message and
//     nothing of the server's insides (Go types, stacks);
//   - a body past the JSON limits is refused before it is decoded;
//   - an accepted body becomes a request that Ollama can read: it encodes
//     to JSON, decodes back as Ollama's server decodes it, encodes the
//     same again (a round trip), and its options are of the types
//     Ollama's api.Options takes, within what the router lets through.
//
// Run one with: go test -run '^$' -fuzz '^FuzzChatRequest$' ./node/api

// fuzzLimits are small, so that the fuzzer reaches them.
var fuzzLimits = jsonLimits{depth: 8, values: 512, messages: 16}

// fuzzTokenLimit is the context the translated requests are checked
// against.
const fuzzTokenLimit = 4096

// maxFuzzBody bounds the bodies tried: the decoders' work grows with
// the body, and the limits are what keeps it bounded, not the size.
const maxFuzzBody = 64 << 10

// internals are texts a refusal must not hold.
var internals = []string{"Go struct", "Go value", "interface {}", "map[string]", "goroutine", "runtime error", "openai.", "api.", "anthropic."}

// checkRefusal checks an error a decoder or a check returned for a
// client's body.
func checkClientError(t *testing.T, body []byte, err error) {
	t.Helper()
	ae := toAPIError(err)
	if ae.Status < 400 || ae.Status >= 500 || ae.Code == "internal_error" {
		t.Fatalf("body %q: refused with %d %s (%v), want a client error", body, ae.Status, ae.Code, err)
	}
	if ae.Message == "" {
		t.Fatalf("body %q: refusal without a message", body)
	}
	for _, s := range internals {
		if strings.Contains(ae.Message, s) {
			t.Fatalf("body %q: the refusal %q tells of the server's insides (%q)", body, ae.Message, s)
		}
	}
}

// decodeFuzzed decodes body as a route does; it returns false, having
// checked the refusal, when the body is refused. A body the limit
// checker passes must be within the limits as the standard decoder
// reads them.
func decodeFuzzed(t *testing.T, body []byte, v any) bool {
	t.Helper()
	err := decodeJSON(body, fuzzLimits, v)
	if err != nil {
		checkClientError(t, body, err)
		return false
	}
	if d := depthOf(string(body)); d > fuzzLimits.depth {
		t.Fatalf("body %q nests %d deep and was decoded", body, d)
	}
	return true
}

// checkSent checks what an accepted request sends to Ollama: it encodes,
// decodes as Ollama's server decodes it, encodes the same again, and its
// options are ones api.Options reads and the router passes on.
func checkSent[R any](t *testing.T, body []byte, req *R, options func(*R) map[string]any) {
	t.Helper()
	first, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("body %q: the request for Ollama does not encode: %v", body, err)
	}
	back := new(R)
	if err := json.Unmarshal(first, back); err != nil {
		t.Fatalf("body %q: Ollama could not decode %s: %v", body, first, err)
	}
	again, err := json.Marshal(back)
	if err != nil || !bytes.Equal(first, again) {
		t.Fatalf("body %q: the request does not round-trip:\n%s\n%s (%v)", body, first, again, err)
	}
	opts := api.DefaultOptions()
	if err := opts.FromMap(options(back)); err != nil {
		t.Fatalf("body %q: Ollama refuses the options %v: %v", body, options(back), err)
	}
}

func chatOptions(r *api.ChatRequest) map[string]any         { return r.Options }
func generateOptions(r *api.GenerateRequest) map[string]any { return r.Options }
func embedOptions(r *api.EmbedRequest) map[string]any       { return r.Options }

// checkChat checks a translated chat: a model and at least one message
// (Ollama takes a chat of none for a request to load the model).
// chatTranslator is a request that becomes an Ollama chat.
type chatTranslator interface {
	toOllama(limit int) (*api.ChatRequest, error)
}

// fuzzChatTranslation decodes body as a request of type R, translates it
// and checks the answer: a clean client error, or a valid chat.
func fuzzChatTranslation[R any, P interface {
	*R
	chatTranslator
}](t *testing.T, body []byte, model func(P) string) {
	if len(body) > maxFuzzBody {
		return
	}
	req := P(new(R))
	if !decodeFuzzed(t, body, req) {
		return
	}
	out, err := req.toOllama(fuzzTokenLimit)
	if err != nil {
		checkClientError(t, body, err)
		return
	}
	checkChat(t, body, model(req), out)
}

func checkChat(t *testing.T, body []byte, model string, out *api.ChatRequest) {
	t.Helper()
	if out == nil || out.Model != model || model == "" {
		t.Fatalf("body %q: translated to %+v", body, out)
	}
	if len(out.Messages) == 0 {
		t.Fatalf("body %q: accepted with no message for the model: %+v", body, out.Messages)
	}
	if n, ok := out.Options["num_predict"].(int); ok && (n < 1 || n > fuzzTokenLimit) {
		t.Fatalf("body %q: num_predict %d passed on", body, n)
	}
	checkSent(t, body, out, chatOptions)
}

func addSeeds(f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
}

// badSeeds are bodies that every decoder must refuse.
var badSeeds = []string{``, ` `, `[]`, `"x"`, `{`, `{"model":`, `{} {}`, `{"model":5}`, `[[[[[[[[[[]]]]]]]]]]`,
	"{\"model\":\"a\x00\"}", "{\"model\":\"\xff\"}", `{"model":"m","x":1e999}`}

// chatSeeds are /v1/chat/completions bodies of every shape the route
// takes or refuses.
var chatSeeds = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":5,"temperature":0.5,"top_p":0.9,"stop":["a","b"],"seed":3}`,
	`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"1"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto"}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object","properties":{"a":{"type":"string"}}}}}}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"minimal","stream":true,"stream_options":{"include_usage":true}}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"logit_bias":{"1":5},"n":1,"max_completion_tokens":7}`,
	`{"model":"m","messages":[{"role":"user","content":[]}]}`,
	`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1e308,"max_tokens":-1,"n":9}`,
}

func FuzzChatRequest(f *testing.F) {
	addSeeds(f, badSeeds...)
	addSeeds(f, chatSeeds...)
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzChatTranslation(t, body, func(r *chatRequest) string { return r.Model })
	})
}

func FuzzCompletionRequest(f *testing.F) {
	addSeeds(f, badSeeds...)
	addSeeds(f,
		`{"model":"m","prompt":"Once"}`,
		`{"model":"m","prompt":["Once"],"max_tokens":3,"temperature":0,"top_p":1,"stop":"x","seed":1,"suffix":"end"}`,
		`{"model":"m","prompt":"x","frequency_penalty":2,"presence_penalty":-2,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","prompt":["a","b"]}`,
		`{"model":"m","prompt":"x","top_p":5,"n":2}`,
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxFuzzBody {
			return
		}
		var req completionRequest
		if !decodeFuzzed(t, body, &req) {
			return
		}
		out, err := req.toOllama(fuzzTokenLimit)
		if err != nil {
			checkClientError(t, body, err)
			return
		}
		if out.Model != req.Model || out.Model == "" {
			t.Fatalf("body %q: translated to model %q", body, out.Model)
		}
		checkSent(t, body, &out, generateOptions)
	})
}

func FuzzEmbeddingsRequest(f *testing.F) {
	addSeeds(f, badSeeds...)
	addSeeds(f,
		`{"model":"e","input":"x"}`,
		`{"model":"e","input":["a","b"],"encoding_format":"base64","dimensions":8}`,
		`{"model":"e","input":[1,2]}`,
		`{"model":"e","input":[],"encoding_format":"hex","dimensions":-1}`,
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxFuzzBody {
			return
		}
		var req openai.EmbedRequest
		if !decodeFuzzed(t, body, &req) {
			return
		}
		out, err := toEmbedRequest(req)
		if err != nil {
			checkClientError(t, body, err)
			return
		}
		switch in := out.Input.(type) {
		case string:
			if in == "" {
				t.Fatalf("body %q: accepted an empty input", body)
			}
		case []string:
			if len(in) == 0 {
				t.Fatalf("body %q: accepted no input", body)
			}
		default:
			t.Fatalf("body %q: input translated to %T", body, in)
		}
		if out.Model == "" || out.Dimensions < 0 {
			t.Fatalf("body %q: translated to %+v", body, out)
		}
		checkSent(t, body, out, embedOptions)
	})
}

func FuzzResponsesRequest(f *testing.F) {
	addSeeds(f, badSeeds...)
	addSeeds(f,
		`{"model":"m","input":"hi"}`,
		`{"model":"m","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"max_output_tokens":9,"temperature":0.2,"top_p":0.5,"stream":true}`,
		`{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"1"}],"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}]}`,
		`{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"s","schema":{"type":"object"}}}}`,
		`{"model":"m","input":"x","store":true,"previous_response_id":"r","background":true,"conversation":"c"}`,
		`{"model":"m","input":[]}`,
		`{"model":"m","input":[{"type":"evil"}]}`,
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzChatTranslation(t, body, func(r *responsesRequest) string { return r.Model })
	})
}

func FuzzMessagesRequest(f *testing.F) {
	addSeeds(f, badSeeds...)
	addSeeds(f,
		`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","max_tokens":8,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":[{"type":"thinking","thinking":"hm"},{"type":"tool_use","id":"t","name":"f","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"1"}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"temperature":0.5,"top_p":0.5,"top_k":4,"stop_sequences":["x"],"stream":true}`,
		`{"model":"m","max_tokens":8,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}]}`,
		`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"evil"}]}]}`,
		`{"model":"m","max_tokens":0,"messages":[{"role":"system","content":"x"}],"temperature":2}`,
		`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":{"a":1}}]}`,
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxFuzzBody {
			return
		}
		var req anthropic.MessagesRequest
		if !decodeFuzzed(t, body, &req) {
			return
		}
		out, err := messagesToOllama(&req, fuzzTokenLimit)
		if err != nil {
			checkClientError(t, body, err)
			return
		}
		if !hasTurn(out.Messages) {
			t.Fatalf("body %q: accepted with only a system prompt: %+v", body, out.Messages)
		}
		checkChat(t, body, req.Model, out)
	})
}

// FuzzNativeRequest decodes a body as each Ollama-native route does
// (/api/chat, /api/generate, /api/embed, /api/show); these pass requests
// on unchanged, so an accepted one must round-trip. Their options are
// checked by the router (node/router FuzzVetOptions).
func FuzzNativeRequest(f *testing.F) {
	addSeeds(f, badSeeds...)
	addSeeds(f,
		`{"model":"m","messages":[{"role":"user","content":"hi","images":["aGk="]}],"stream":false,"format":"json","options":{"temperature":0.1,"stop":["x"]},"keep_alive":"5m","think":true}`,
		`{"model":"m","prompt":"Once","suffix":"end","system":"s","template":"t","context":[1,2],"raw":true,"images":["aGk="],"options":{"num_predict":3},"keep_alive":0,"think":"high"}`,
		`{"model":"m","input":["a","b"],"truncate":true,"dimensions":3,"keep_alive":-1}`,
		`{"model":"m","name":"n","verbose":true}`,
		`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}}]}`,
		`{"model":"m","keep_alive":{}}`, `{"model":"m","think":5}`, `{"model":"m","images":["!!!"]}`, `{"model":"m","format":{"type":"object"}}`,
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxFuzzBody {
			return
		}
		var chat api.ChatRequest
		if decodeFuzzed(t, body, &chat) {
			checkNativeSent(t, body, &chat)
		}
		var gen api.GenerateRequest
		if decodeFuzzed(t, body, &gen) {
			checkNativeSent(t, body, &gen)
		}
		var emb api.EmbedRequest
		if decodeFuzzed(t, body, &emb) {
			checkNativeSent(t, body, &emb)
		}
		var show api.ShowRequest
		if decodeFuzzed(t, body, &show) {
			if err := checkModelName(show.Model); err != nil {
				checkClientError(t, body, err)
			}
			checkNativeSent(t, body, &show)
		}
	})
}

// checkNativeSent checks that a request passed on unchanged encodes and
// round-trips.
func checkNativeSent[R any](t *testing.T, body []byte, req *R) {
	t.Helper()
	first, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("body %q: %T does not encode: %v", body, req, err)
	}
	back := new(R)
	if err := json.Unmarshal(first, back); err != nil {
		t.Fatalf("body %q: %T does not decode its own encoding %s: %v", body, req, first, err)
	}
	if again, err := json.Marshal(back); err != nil || !bytes.Equal(first, again) {
		t.Fatalf("body %q: %T does not round-trip:\n%s\n%s (%v)", body, req, first, again, err)
	}
}

// FuzzFramingHeaders reads header blocks as checkFraming does: it must
// find every Content-Length and Transfer-Encoding, whatever the case and
// spacing, and nothing else.
func FuzzFramingHeaders(f *testing.F) {
	for _, s := range []string{
		"Host: x\r\nContent-Length: 5\r\n\r\n",
		"content-length:5\r\nCONTENT-LENGTH: 6\r\n",
		"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
		"Transfer-Encoding : gzip, chunked\n",
		"X: Content-Length: 1\r\nNoColon\r\n:\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		lengths, encodings := framingHeaders([]byte(raw))
		var wantL, wantE []string
		for _, line := range strings.Split(raw, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			// Header names are ASCII: a name with other bytes is not one
			// of these, whatever Unicode case folding says.
			switch asciiLower(strings.Trim(k, " \t\r")) {
			case "content-length":
				wantL = append(wantL, strings.Trim(v, " \t\r"))
			case "transfer-encoding":
				wantE = append(wantE, strings.Trim(v, " \t\r"))
			}
		}
		if !reflect.DeepEqual(lengths, wantL) || !reflect.DeepEqual(encodings, wantE) {
			t.Fatalf("%q: got %q %q, want %q %q", raw, lengths, encodings, wantL, wantE)
		}
	})
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}
