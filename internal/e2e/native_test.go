package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testnode"
)

// TestOllamaClientThroughNode points Ollama's own Go client at a node, as
// an Ollama user would, over the simulator and the real Ollama.
func TestOllamaClientThroughNode(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		n := testnode.Start(t, tg.ollamaURL)
		base, _ := url.Parse(n.URL())
		c := api.NewClient(base, testauth.Client)
		ctx := testCtx(t)

		list, err := c.List(ctx)
		if err != nil || !hasModel(list, tg.chat) {
			t.Fatalf("list: %v %+v", err, list)
		}
		var chunks int
		var final api.ChatResponse
		err = c.Chat(ctx, &api.ChatRequest{Model: tg.chat, Messages: []api.Message{{Role: "user", Content: "hi"}}, Options: map[string]any{"num_predict": 8}},
			func(r api.ChatResponse) error { chunks++; final = r; return nil })
		if err != nil || chunks < 2 || !final.Done || final.EvalCount == 0 {
			t.Fatalf("streamed chat: %v, %d chunks, final %+v", err, chunks, final)
		}
		no := false
		var gen api.GenerateResponse
		err = c.Generate(ctx, &api.GenerateRequest{Model: tg.chat, Prompt: "Once", Stream: &no, Options: map[string]any{"num_predict": 8}},
			func(r api.GenerateResponse) error { gen = r; return nil })
		if err != nil || !gen.Done || gen.Response == "" {
			t.Fatalf("generate: %v %+v", err, gen)
		}
		emb, err := c.Embed(ctx, &api.EmbedRequest{Model: tg.embed, Input: []string{"a", "b"}})
		if err != nil || len(emb.Embeddings) != 2 || len(emb.Embeddings[0]) != tg.embedDims {
			t.Fatalf("embed: %v", err)
		}
		show, err := c.Show(ctx, &api.ShowRequest{Model: tg.chat})
		if err != nil || show.Details.Family == "" {
			t.Fatalf("show: %v %+v", err, show)
		}
		ps, err := c.ListRunning(ctx)
		if err != nil || len(ps.Models) == 0 {
			t.Fatalf("ps after a chat: %v %+v", err, ps)
		}
		if v, err := c.Version(ctx); err != nil || v == "" {
			t.Fatalf("version %q: %v", v, err)
		}
		err = c.Chat(ctx, &api.ChatRequest{Model: "no-such-model"}, func(api.ChatResponse) error { return nil })
		var se api.StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown model: %v", err)
		}
	})
}

// TestInvalidModelNamesThroughNode: a node refuses a name Ollama's parser
// refuses with a 400 naming the model, whatever its Ollama would have
// answered (the real one fails some such requests with a server error,
// which reached clients as a 502), and a well-formed unknown name is 404.
func TestInvalidModelNamesThroughNode(t *testing.T) {
	cases := []struct {
		name, method, path, body string
		status                   int
	}{
		{"model by id", "GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", "", http.StatusBadRequest},
		{"ollama show", "POST", "/api/show", `{"model":"../../etc/passwd"}`, http.StatusBadRequest},
		{"ollama embed", "POST", "/api/embed", `{"model":"../../etc/passwd","input":"x"}`, http.StatusBadRequest},
		{"chat completion", "POST", "/v1/chat/completions", `{"model":"a b","messages":[{"role":"user","content":"x"}]}`, http.StatusBadRequest},
		{"unknown model by id", "GET", "/v1/models/nope-model:1b", "", http.StatusNotFound},
		{"unknown model shown", "POST", "/api/show", `{"model":"nope-model:1b"}`, http.StatusNotFound},
	}
	eachTarget(t, func(t *testing.T, tg target) {
		n := testnode.Start(t, tg.ollamaURL)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				req, _ := http.NewRequestWithContext(testCtx(t), c.method, n.URL()+c.path, strings.NewReader(c.body))
				resp, err := testauth.Client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Errorf("status %d, want %d", resp.StatusCode, c.status)
				}
			})
		}
	})
}

func hasModel(list *api.ListResponse, name string) bool {
	for _, m := range list.Models {
		if strings.HasPrefix(m.Name, name) {
			return true
		}
	}
	return false
}

// TestAnthropicAndResponsesRoutes checks /v1/messages and /v1/responses,
// streamed and not, over both backends.
func TestAnthropicAndResponsesRoutes(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		n := testnode.Start(t, tg.ollamaURL)
		msg := `{"model":"` + tg.chat + `","max_tokens":8,"messages":[{"role":"user","content":"hi"}]`
		var m struct {
			Type    string `json:"type"`
			Role    string `json:"role"`
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
			Usage struct {
				OutputTokens int `json:"output_tokens"`
			} `json:"usage"`
		}
		postJSON(t, n.URL()+"/v1/messages", msg+`}`, &m)
		if m.Type != "message" || m.Role != "assistant" || len(m.Content) == 0 || m.Content[0].Text == "" || m.Usage.OutputTokens == 0 {
			t.Errorf("messages: %+v", m)
		}
		events := postStream(t, n.URL()+"/v1/messages", msg+`,"stream":true}`)
		if events[0] != "message_start" || events[len(events)-1] != "message_stop" {
			t.Errorf("messages stream events %v", events)
		}

		resp := `{"model":"` + tg.chat + `","max_output_tokens":8,"input":"hi"`
		var r struct {
			Object string `json:"object"`
			Status string `json:"status"`
			Output []struct {
				Type string `json:"type"`
			} `json:"output"`
		}
		postJSON(t, n.URL()+"/v1/responses", resp+`}`, &r)
		if r.Object != "response" || len(r.Output) == 0 {
			t.Errorf("responses: %+v", r)
		}
		events = postStream(t, n.URL()+"/v1/responses", resp+`,"stream":true}`)
		if events[0] != "response.created" || events[len(events)-1] != "response.completed" {
			t.Errorf("responses stream events %v", events)
		}
	})
}

func postJSON(t *testing.T, url, body string, out any) {
	t.Helper()
	resp, err := testauth.Client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// postStream returns the event names of an SSE response.
func postStream(t *testing.T, url, body string) []string {
	t.Helper()
	resp, err := testauth.Client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, e)
		}
	}
	if resp.StatusCode != 200 || len(events) == 0 {
		t.Fatalf("%s: status %d, events %v", url, resp.StatusCode, events)
	}
	return events
}
