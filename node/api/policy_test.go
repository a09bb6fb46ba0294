package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/router"
)

// What clients may ask of the backend, route by route: the server runs
// over a router whose node holds a replica of deployment "chat" and of
// deployment "embed", over a backend that records what reaches it.

type fixedState struct{ s *state.State }

func (f fixedState) Read(fn func(*state.State)) { fn(f.s) }

func policyState() *state.State {
	s := state.New()
	s.Nodes["n1"] = &state.Node{ID: "n1", Status: state.NodeReady}
	for name, model := range map[string]string{"chat": "llama3.2:1b", "embed": "nomic-embed-text"} {
		s.Deployments[name] = &state.Deployment{Name: name, Model: model, Replicas: 1}
		s.Placements[name+"\x00n1"] = &state.Placement{Deployment: name, Node: "n1", State: state.PlacementReady}
	}
	return s
}

// reached is what reached the backend.
type reached struct {
	mu        sync.Mutex
	calls     int
	options   map[string]any
	keepAlive *api.Duration
}

func (r *reached) record(opts map[string]any, ka *api.Duration) {
	r.mu.Lock()
	r.calls++
	r.options, r.keepAlive = opts, ka
	r.mu.Unlock()
}

func recordingBackend(r *reached) *fakeBackend {
	return &fakeBackend{
		chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
			r.record(req.Options, req.KeepAlive)
			return words("ok")(ctx, req, fn)
		},
		generate: func(_ context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
			r.record(req.Options, req.KeepAlive)
			return fn(api.GenerateResponse{Model: req.Model, Response: "ok", Done: true, DoneReason: "stop"})
		},
		embed: func(_ context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error) {
			r.record(req.Options, req.KeepAlive)
			return &api.EmbedResponse{Model: req.Model, Embeddings: [][]float32{{0.5}}}, nil
		},
	}
}

// policyRoute is one inference route and how to ask it.
type policyRoute struct {
	path   string
	openAI bool
	model  string // a deployment the route serves
	body   string // a format with the model and extra fields
}

var policyRoutes = []policyRoute{
	{"/v1/chat/completions", true, "chat", `{"model":%q,"messages":[{"role":"user","content":"hi"}]%s}`},
	{"/v1/completions", true, "chat", `{"model":%q,"prompt":"hi"%s}`},
	{"/v1/embeddings", true, "embed", `{"model":%q,"input":"hi"%s}`},
	{"/api/chat", false, "chat", `{"model":%q,"stream":false,"messages":[{"role":"user","content":"hi"}]%s}`},
	{"/api/generate", false, "chat", `{"model":%q,"stream":false,"prompt":"hi"%s}`},
	{"/api/embed", false, "embed", `{"model":%q,"input":"hi"%s}`},
}

// policyCase is one request; a case leaves out the routes for which it
// has no extra fields.
type policyCase struct {
	name string
	// model replaces the route's deployment when set.
	model string
	// extra are JSON fields added to the body: for OpenAI routes, for
	// OpenAI embeddings, and for Ollama-native routes. "-" leaves the
	// family out.
	openAI, openAIEmbed, native string
	status                      int
	// reach are options Ollama must get, with their values; absent are
	// options it must not get.
	reach  map[string]any
	absent []string
	// refused is what the error must name (the option or "model").
	refused string
}

var policyCases = []policyCase{
	{name: "sampling options reach Ollama", status: 200,
		openAI:      `,"temperature":0.5,"top_p":0.9,"seed":3,"stop":["x"],"max_tokens":8`,
		openAIEmbed: "-",
		native:      `,"options":{"temperature":0.5,"top_p":0.9,"seed":3,"stop":["x"],"num_predict":8,"top_k":5,"min_p":0.1,"repeat_penalty":1.1}`,
		reach:       map[string]any{"temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": []string{"x"}, "num_predict": 8}},
	{name: "keep_alive 0 is replaced by the agent's pin", status: 200,
		openAI: `,"keep_alive":0`, openAIEmbed: `,"keep_alive":0`, native: `,"keep_alive":0`},
	{name: "num_gpu is refused", openAI: "-", openAIEmbed: "-", native: `,"options":{"num_gpu":0}`, status: 400, refused: "num_gpu"},
	{name: "main_gpu is refused", openAI: "-", openAIEmbed: "-", native: `,"options":{"main_gpu":1,"temperature":1}`, status: 400, refused: "main_gpu"},
	{name: "use_mlock is refused", openAI: "-", openAIEmbed: "-", native: `,"options":{"use_mlock":true}`, status: 400, refused: "use_mlock"},
	{name: "an unknown option is refused", openAI: "-", openAIEmbed: "-", native: `,"options":{"made_up":1}`, status: 400, refused: "made_up"},
	{name: "num_ctx above the context length is refused", openAI: "-", openAIEmbed: "-",
		native: `,"options":{"num_ctx":1000000}`, status: 400, refused: "num_ctx"},
	{name: "num_predict above the context length is refused", openAI: "-", openAIEmbed: "-",
		native: `,"options":{"num_predict":1000000000000}`, status: 400, refused: "num_predict"},
	{name: "num_ctx within the context length is not passed on", openAI: "-", openAIEmbed: "-",
		native: `,"options":{"num_ctx":2048,"temperature":0.1}`, status: 200, reach: map[string]any{"temperature": 0.1}, absent: []string{"num_ctx"}},
	{name: "an undeployed model is refused", model: "qwen3:0.6b", status: 404, refused: "model"},
	{name: "a cloud model is refused", model: "gpt-oss:120b-cloud", status: 404, refused: "model"},
}

func TestClientsCannotSteerTheBackend(t *testing.T) {
	var got reached
	rt := router.New("n1", recordingBackend(&got), fixedState{policyState()}, nil).WithConfig(router.Config{ContextLength: 8192})
	url, _ := startServer(t, rt)
	for _, rte := range policyRoutes {
		for _, tc := range policyCases {
			extra := tc.native
			if rte.openAI {
				extra = tc.openAI
				if rte.path == "/v1/embeddings" {
					extra = tc.openAIEmbed
				}
			}
			if extra == "-" {
				continue
			}
			t.Run(rte.path+"/"+tc.name, func(t *testing.T) {
				got = reached{}
				model := rte.model
				if tc.model != "" {
					model = tc.model
				}
				status, body := postJSON(t, url+rte.path, fmt.Sprintf(rte.body, model, extra))
				if status != tc.status {
					t.Fatalf("status %d, want %d: %s", status, tc.status, body)
				}
				if tc.status != http.StatusOK {
					checkRefusal(t, rte, tc, body, &got)
					return
				}
				checkReached(t, tc, &got)
			})
		}
	}
}

func postJSON(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("answer: %v", err)
	}
	return resp.StatusCode, raw
}

// checkRefusal checks the error's format and that nothing reached Ollama.
func checkRefusal(t *testing.T, rte policyRoute, tc policyCase, body []byte, got *reached) {
	t.Helper()
	if got.calls != 0 {
		t.Fatalf("refused, but Ollama was called %d times", got.calls)
	}
	var msg string
	if rte.openAI {
		msg = openAIMessage(t, body, tc)
	} else {
		msg = ollamaMessage(t, body)
	}
	if !strings.Contains(msg, tc.refused) && !(tc.refused == "model" && strings.Contains(msg, "model")) {
		t.Fatalf("message %q does not name %s", msg, tc.refused)
	}
}

func ollamaMessage(t *testing.T, body []byte) string {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	msg, ok := e["error"].(string)
	if !ok || msg == "" || len(e) != 1 {
		t.Fatalf(`want Ollama's {"error": "..."}, got %s`, body)
	}
	return msg
}

func openAIMessage(t *testing.T, body []byte, tc policyCase) string {
	t.Helper()
	var e openAIBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	wantCode, wantParam := "unsupported_parameter", "options."+tc.refused
	if tc.refused == "model" {
		wantCode, wantParam = "model_not_found", "model"
	}
	if e.Error.Type != typeInvalid || e.Error.Code == nil || *e.Error.Code != wantCode || e.Error.Param == nil || *e.Error.Param != wantParam {
		t.Fatalf("want an %s error with code %s and param %s, got %s", typeInvalid, wantCode, wantParam, body)
	}
	return e.Error.Message
}

// checkReached checks what reached Ollama: the options wanted, none of
// the absent ones, and the agent's pin as keep_alive.
func checkReached(t *testing.T, tc policyCase, got *reached) {
	t.Helper()
	if got.calls != 1 {
		t.Fatalf("Ollama called %d times", got.calls)
	}
	for k, want := range tc.reach {
		if v, ok := got.options[k]; !ok || fmt.Sprint(v) != fmt.Sprint(want) {
			t.Errorf("option %s reached Ollama as %v, want %v (options %v)", k, v, want, got.options)
		}
	}
	for _, k := range tc.absent {
		if _, ok := got.options[k]; ok {
			t.Errorf("option %s reached Ollama: %v", k, got.options)
		}
	}
	if got.keepAlive == nil || got.keepAlive.Duration != backend.PinKeepAlive {
		t.Errorf("keep_alive reaching Ollama %v, want the agent's pin %v", got.keepAlive, backend.PinKeepAlive)
	}
}

func TestRefusedModelNamesAreNotEchoedWhole(t *testing.T) {
	rt := router.New("n1", recordingBackend(&reached{}), fixedState{policyState()}, nil)
	url, _ := startServer(t, rt)
	name := strings.Repeat("a", 64) + "-secret-tail:7b"
	for _, path := range []string{"/v1/chat/completions", "/api/chat"} {
		status, body := postJSON(t, url+path, fmt.Sprintf(`{"model":%q,"stream":false,"messages":[{"role":"user","content":"hi"}]}`, name))
		if status != http.StatusNotFound || strings.Contains(string(body), "secret-tail") || !strings.Contains(string(body), "aaaaaaaa") {
			t.Errorf("%s: %d %s; want 404 naming only the start of the model", path, status, body)
		}
	}
}
