package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/router"
)

// limitedBackend is a fakeBackend that knows its replicas' context, as
// the router does.
type limitedBackend struct {
	*fakeBackend
	context int
}

func (l limitedBackend) ContextLength() int { return l.context }

// TestRequestParametersAreChecked: parameters Ollama would fail on, or
// that its translator drops in silence, are refused with a 400 naming
// them, before the backend is called.
func TestRequestParametersAreChecked(t *testing.T) {
	withField := func(field string) string {
		return `{"model":"m","messages":[{"role":"user","content":"hi"}],` + field + `}`
	}
	schema := func(s string) string {
		return withField(`"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":` + s + `}}`)
	}
	tool := `{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}`
	const schemaParam = "response_format.json_schema.schema"
	cases := []errorCase{
		{name: "schema is a string", body: schema(`"object"`), param: schemaParam},
		{name: "schema is an array", body: schema(`[1]`), param: schemaParam},
		{name: "schema with an unknown type", body: schema(`{"type":"object","properties":{"age":{"type":"integr"}}}`), param: schemaParam},
		{name: "schema properties not an object", body: schema(`{"type":"object","properties":[1]}`), param: schemaParam},
		{name: "schema required not strings", body: schema(`{"type":"object","required":[1]}`), param: schemaParam},
		{name: "schema items not a schema", body: schema(`{"type":"array","items":3}`), param: schemaParam},
		{name: "max_tokens past the context", body: withField(`"max_tokens":1000000000000`), param: "max_tokens"},
		{name: "max_completion_tokens past the context", body: withField(`"max_completion_tokens":1000000000000`), param: "max_completion_tokens"},
		{name: "completions max_tokens past the context", path: "/v1/completions", body: `{"model":"m","prompt":"hi","max_tokens":1000000000000}`, param: "max_tokens"},
		{name: "logit_bias an array", body: withField(`"logit_bias":[1,2]`), param: "logit_bias"},
		{name: "logit_bias a string", body: withField(`"logit_bias":"x"`), param: "logit_bias"},
		{name: "logit_bias out of range", body: withField(`"logit_bias":{"50256":500}`), param: "logit_bias"},
		{name: "tool without function", body: withField(`"tools":[{"type":"function"}]`), param: "tools[0].function"},
		{name: "tool of an unknown type", body: withField(`"tools":[` + tool + `,{"type":"retrieval","function":{"name":"g"}}]`), param: "tools[1].type"},
		{name: "tool_choice naming no tool", body: withField(`"tools":[` + tool + `],"tool_choice":{"type":"function","function":{"name":"g"}}`), param: "tool_choice"},
		{name: "tool_choice naming a function without tools", body: withField(`"tool_choice":{"type":"function","function":{"name":"f"}}`), param: "tool_choice"},
		{name: "tool_choice unknown word", body: withField(`"tool_choice":"sometimes"`), param: "tool_choice"},
		{name: "responses previous_response_id", path: "/v1/responses", body: `{"model":"m","input":"hi","previous_response_id":"resp_1"}`, param: "previous_response_id", code: "unsupported_parameter"},
		{name: "responses store", path: "/v1/responses", body: `{"model":"m","input":"hi","store":true}`, param: "store", code: "unsupported_parameter"},
		{name: "responses schema not a schema", path: "/v1/responses", body: `{"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"x","schema":{"type":"obj"}}}}`, param: "text.format.schema"},
		{name: "responses max_output_tokens past the context", path: "/v1/responses", body: `{"model":"m","input":"hi","max_output_tokens":1000000000000}`, param: "max_output_tokens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be := limitedBackend{&fakeBackend{chat: func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error {
				t.Error("the backend was called for a request that should be refused")
				return nil
			}}, 8192}
			url, _ := startServer(t, be)
			if tc.path == "" {
				tc.path = "/v1/chat/completions"
			}
			tc.status, tc.errType = http.StatusBadRequest, typeInvalid
			checkOpenAIError(t, url, tc)
		})
	}
}

// TestValidParametersAreAccepted: the checks let through what the
// upstream APIs accept.
func TestValidParametersAreAccepted(t *testing.T) {
	withField := func(field string) string {
		return `{"model":"m","messages":[{"role":"user","content":"hi"}],` + field + `}`
	}
	tool := `{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}`
	cases := []struct{ name, path, body string }{
		{"a nested schema", "/v1/chat/completions", withField(`"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":` +
			`{"type":"object","properties":{"a":{"type":["string","null"]},"b":{"type":"array","items":{"$ref":"#/$defs/n"},"minItems":1}},` +
			`"required":["a"],"additionalProperties":false,"$defs":{"n":{"type":"integer","minimum":0}}}}}`)},
		{"max_tokens at the context", "/v1/chat/completions", withField(`"max_tokens":8192`)},
		{"a logit_bias map", "/v1/chat/completions", withField(`"logit_bias":{"50256":-100}`)},
		{"tool_choice auto", "/v1/chat/completions", withField(`"tools":[` + tool + `],"tool_choice":"auto"`)},
		{"tool_choice naming a tool", "/v1/chat/completions", withField(`"tools":[` + tool + `],"tool_choice":{"type":"function","function":{"name":"f"}}`)},
		{"responses store false", "/v1/responses", `{"model":"m","input":"hi","store":false}`},
		{"responses with a schema", "/v1/responses", `{"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"x","schema":{"type":"object"}}}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := startServer(t, limitedBackend{&fakeBackend{chat: words("ok")}, 8192})
			status, body := postJSON(t, url+tc.path, tc.body)
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
		})
	}
}

// TestStoredResponsesAreNotFound: GET and DELETE /v1/responses/{id}
// answer that no response is stored, in OpenAI's error format.
func TestStoredResponsesAreNotFound(t *testing.T) {
	url, _ := startServer(t, &fakeBackend{})
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			checkOpenAIError(t, url, errorCase{method: method, path: "/v1/responses/resp_123", status: http.StatusNotFound, errType: typeInvalid, code: "not_found"})
		})
	}
}

// anthropicError reads Anthropic's error format.
func anthropicError(t *testing.T, raw []byte) (errType, message string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.Type != "error" {
		t.Fatalf("not an Anthropic error: %s", raw)
	}
	return e.Error.Type, e.Error.Message
}

func TestAnthropicRequestsAreChecked(t *testing.T) {
	cases := []struct{ name, body, names string }{
		{"a bogus role", `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"},{"role":"bogus","content":"x"}]}`, "messages.1.role"},
		{"a system role", `{"model":"m","max_tokens":8,"messages":[{"role":"system","content":"hi"}]}`, "messages.0.role"},
		{"max_tokens past the context", `{"model":"m","max_tokens":1000000000000,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := startServer(t, limitedBackend{&fakeBackend{chat: func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error {
				t.Error("the backend was called for a request that should be refused")
				return nil
			}}, 8192})
			status, raw := postJSON(t, url+"/v1/messages", tc.body)
			typ, msg := anthropicError(t, raw)
			if status != http.StatusBadRequest || typ != "invalid_request_error" || !strings.HasPrefix(msg, tc.names+":") {
				t.Fatalf("status %d, %s: want 400 invalid_request_error naming %s", status, raw, tc.names)
			}
		})
	}
}

// TestAnthropicStopAndUsage: stop_sequence is always there (null, since
// Ollama does not say which sequence stopped it) and a stream gives one
// input_tokens figure.
func TestAnthropicStopAndUsage(t *testing.T) {
	url, _ := startServer(t, &fakeBackend{chat: words("a", "b")})
	msg := `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hello there, how are you today?"}]`
	t.Run("message", func(t *testing.T) {
		status, raw := postJSON(t, url+"/v1/messages", msg+`}`)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); status != 200 || err != nil {
			t.Fatalf("status %d: %s", status, raw)
		}
		if string(m["stop_sequence"]) != "null" || string(m["stop_reason"]) != `"end_turn"` {
			t.Errorf("stop_reason %s, stop_sequence %s: want \"end_turn\" and null", m["stop_reason"], m["stop_sequence"])
		}
	})
	t.Run("stream", func(t *testing.T) {
		events := streamEvents(t, url+"/v1/messages", msg+`,"stream":true}`)
		var start struct {
			Message map[string]json.RawMessage `json:"message"`
		}
		var delta struct {
			Delta map[string]json.RawMessage `json:"delta"`
			Usage usage                      `json:"usage"`
		}
		decodeEvent(t, events, "message_start", &start)
		decodeEvent(t, events, "message_delta", &delta)
		for _, f := range []string{"stop_reason", "stop_sequence"} {
			if _, ok := start.Message[f]; !ok {
				t.Errorf("message_start leaves out %s: %s", f, events["message_start"])
			}
		}
		if string(delta.Delta["stop_sequence"]) != "null" {
			t.Errorf("message_delta: stop_sequence %q, want null", delta.Delta["stop_sequence"])
		}
		var startUsage usage
		if err := json.Unmarshal(start.Message["usage"], &startUsage); err != nil {
			t.Fatal(err)
		}
		if startUsage.InputTokens != delta.Usage.InputTokens {
			t.Errorf("input_tokens %d in message_start, %d in message_delta", startUsage.InputTokens, delta.Usage.InputTokens)
		}
	})
}

type usage struct {
	InputTokens int `json:"input_tokens"`
}

// streamEvents reads an SSE stream into the data of each named event (the
// last one of a name).
func streamEvents(t *testing.T, url, body string) map[string]string {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			out[event] = d
		}
	}
	if resp.StatusCode != http.StatusOK || len(out) == 0 {
		t.Fatalf("status %d, events %v", resp.StatusCode, out)
	}
	return out
}

func decodeEvent(t *testing.T, events map[string]string, name string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(events[name]), v); err != nil {
		t.Fatalf("%s: %v (%q)", name, err, events[name])
	}
}

// TestIDsUseUpstreamPrefixes: each route's ids start as the upstream
// API's do, so clients that check them accept them.
func TestIDsUseUpstreamPrefixes(t *testing.T) {
	be := &fakeBackend{
		chat: words("ok"),
		generate: func(_ context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
			return fn(api.GenerateResponse{Model: req.Model, Response: "ok", Done: true, DoneReason: "stop"})
		},
	}
	url, _ := startServer(t, be)
	chat := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	cases := []struct {
		name, path, body string
		id               func(raw []byte) (string, error)
		prefix           string
	}{
		{"chat completion", "/v1/chat/completions", chat, topID, "chatcmpl-"},
		{"completion", "/v1/completions", `{"model":"m","prompt":"hi"}`, topID, "cmpl-"},
		{"anthropic message", "/v1/messages", `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, topID, "msg_"},
		{"response", "/v1/responses", `{"model":"m","input":"hi"}`, topID, "resp_"},
		{"response output message", "/v1/responses", `{"model":"m","input":"hi"}`, outputID, "msg_"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := postJSON(t, url+tc.path, tc.body)
			id, err := tc.id(raw)
			if status != http.StatusOK || err != nil {
				t.Fatalf("status %d, %v: %s", status, err, raw)
			}
			if !strings.HasPrefix(id, tc.prefix) || len(id) <= len(tc.prefix) {
				t.Errorf("id %q, want the prefix %q", id, tc.prefix)
			}
		})
	}
}

func topID(raw []byte) (string, error) {
	var v struct{ ID string }
	err := json.Unmarshal(raw, &v)
	return v.ID, err
}

func outputID(raw []byte) (string, error) {
	var v struct{ Output []struct{ ID string } }
	if err := json.Unmarshal(raw, &v); err != nil || len(v.Output) == 0 {
		return "", fmt.Errorf("no output: %v", err)
	}
	return v.Output[0].ID, nil
}

// TestUnknownModelIsOneAnswer: a model that Ollama does not have is the
// same 404 on every route, and no response claims a replica served it.
func TestUnknownModelIsOneAnswer(t *testing.T) {
	notFound := fmt.Errorf("%w: model 'nope:7b' not found", backend.ErrModelNotFound)
	be := &fakeBackend{err: notFound, chat: func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error { return notFound }}
	rt := router.New("n1", be, nil, nil).WithConfig(router.Config{ServeUndeployed: true})
	url, _ := startServer(t, rt)
	ask := func(method, path, body string) (*http.Response, openAIBody) {
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var e openAIBody
		if err := json.Unmarshal(raw, &e); err != nil || resp.StatusCode != http.StatusNotFound || e.Error.Code == nil || *e.Error.Code != "model_not_found" {
			t.Fatalf("%s %s: status %d %s, want 404 model_not_found", method, path, resp.StatusCode, raw)
		}
		return resp, e
	}
	_, model := ask(http.MethodGet, "/v1/models/nope:7b", "")
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("chat stream=%v", stream), func(t *testing.T) {
			resp, chat := ask(http.MethodPost, "/v1/chat/completions", fmt.Sprintf(`{"model":"nope:7b","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream))
			if chat.Error.Message != model.Error.Message {
				t.Errorf("chat says %q, /v1/models/{id} %q", chat.Error.Message, model.Error.Message)
			}
			for _, h := range []string{HeaderNode, HeaderReplica, HeaderRoute, HeaderAttempts} {
				if v := resp.Header.Get(h); v != "" {
					t.Errorf("%s: %q on a request no replica served", h, v)
				}
			}
		})
	}
}

// showCounter is a fakeBackend that counts the descriptions asked of it.
type showCounter struct {
	*fakeBackend
	shows atomic.Int32
}

func (s *showCounter) Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	s.shows.Add(1)
	return s.fakeBackend.Show(ctx, req)
}

// TestInvalidModelNamesAreRefused: a name that is no deployment's and
// that Ollama's rules refuse never reaches Ollama (which fails some such
// requests with a server error): 400 naming the model, on every route,
// whether or not the node serves undeployed models. A well-formed
// unknown name stays a 404.
func TestInvalidModelNamesAreRefused(t *testing.T) {
	routes := []struct{ name, method, path, body string }{
		{"model by id", http.MethodGet, "/v1/models/..%2F..%2Fetc%2Fpasswd", ""},
		{"ollama show", http.MethodPost, "/api/show", `{"model":"../../etc/passwd"}`},
		{"chat completion", http.MethodPost, "/v1/chat/completions", `{"model":"../../etc/passwd","messages":[{"role":"user","content":"hi"}]}`},
		{"ollama chat", http.MethodPost, "/api/chat", `{"model":"a b c","stream":false,"messages":[{"role":"user","content":"hi"}]}`},
		{"ollama embed", http.MethodPost, "/api/embed", `{"model":"x/y/z/w","input":"hi"}`},
		{"anthropic message", http.MethodPost, "/v1/messages", `{"model":"../x","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`},
	}
	for _, undeployed := range []bool{true, false} {
		for _, rte := range routes {
			t.Run(fmt.Sprintf("%s/undeployed=%v", rte.name, undeployed), func(t *testing.T) {
				var got reached
				be := &showCounter{fakeBackend: recordingBackend(&got)}
				rt := router.New("n1", be, fixedState{policyState()}, nil).WithConfig(router.Config{ServeUndeployed: undeployed})
				url, _ := startServer(t, rt)
				req, _ := http.NewRequest(rte.method, url+rte.path, strings.NewReader(rte.body))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				raw, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusBadRequest || got.calls != 0 || be.shows.Load() != 0 {
					t.Fatalf("status %d after %d calls and %d descriptions: %s", resp.StatusCode, got.calls, be.shows.Load(), raw)
				}
				if strings.HasPrefix(rte.path, "/v1/") && rte.path != "/v1/messages" {
					var e openAIBody
					if json.Unmarshal(raw, &e) != nil || e.Error.Param == nil || *e.Error.Param != "model" {
						t.Errorf("want an OpenAI error naming the model: %s", raw)
					}
				}
			})
		}
	}
}

// TestModelIDsAreUnescaped: an SDK escapes the slash of a model id.
func TestModelIDsAreUnescaped(t *testing.T) {
	rt := router.New("n1", &fakeBackend{err: backend.ErrModelNotFound}, nil, nil).WithConfig(router.Config{ServeUndeployed: true})
	url, _ := startServer(t, rt)
	resp, err := client.Get(url + "/v1/models/acme%2Fnope:7b")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e openAIBody
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusNotFound || !strings.Contains(e.Error.Message, "'acme/nope:7b'") {
		t.Fatalf("status %d, %+v: want 404 naming acme/nope:7b", resp.StatusCode, e.Error)
	}
}
