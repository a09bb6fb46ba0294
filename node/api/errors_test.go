package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/router"
	"github.com/sovra/sovra/node/router/admit"
)

type errorCase struct {
	name       string
	method     string
	path       string
	body       string
	chatErr    error
	status     int
	errType    string
	param      string
	code       string
	retryAfter string
	header     [2]string // a request header to set, when not empty
}

func TestOpenAIErrors(t *testing.T) {
	chat := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	withField := func(field string) string {
		return `{"model":"m","messages":[{"role":"user","content":"hi"}],` + field + `}`
	}
	cases := []errorCase{
		{name: "bad json", path: "/v1/chat/completions", body: `{"model":`, status: 400, errType: "invalid_request_error"},
		{name: "empty body", path: "/v1/chat/completions", body: ``, status: 400, errType: "invalid_request_error"},
		{name: "not an object", path: "/v1/chat/completions", body: `[1,2]`, status: 400, errType: "invalid_request_error"},
		{name: "missing model", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"hi"}]}`, status: 400, param: "model"},
		{name: "missing messages", path: "/v1/chat/completions", body: `{"model":"m"}`, status: 400, param: "messages"},
		{name: "bad role", path: "/v1/chat/completions", body: `{"model":"m","messages":[{"role":"robot","content":"hi"}]}`, status: 400, param: "messages[0].role"},
		{name: "temperature wrong type", path: "/v1/chat/completions", body: withField(`"temperature":"hot"`), status: 400, param: "temperature"},
		{name: "temperature too high", path: "/v1/chat/completions", body: withField(`"temperature":3`), status: 400, param: "temperature"},
		{name: "top_p out of range", path: "/v1/chat/completions", body: withField(`"top_p":1.5`), status: 400, param: "top_p"},
		{name: "n above one", path: "/v1/chat/completions", body: withField(`"n":2`), status: 400, param: "n"},
		{name: "max_tokens zero", path: "/v1/chat/completions", body: withField(`"max_tokens":0`), status: 400, param: "max_tokens"},
		{name: "max_completion_tokens negative", path: "/v1/chat/completions", body: withField(`"max_completion_tokens":-1`), status: 400, param: "max_completion_tokens"},
		{name: "too many stops", path: "/v1/chat/completions", body: withField(`"stop":["a","b","c","d","e"]`), status: 400, param: "stop"},
		{name: "stop of numbers", path: "/v1/chat/completions", body: withField(`"stop":[1]`), status: 400, param: "stop"},
		{name: "bad response format", path: "/v1/chat/completions", body: withField(`"response_format":{"type":"yaml"}`), status: 400, param: "response_format.type"},
		{name: "schema without schema", path: "/v1/chat/completions", body: withField(`"response_format":{"type":"json_schema"}`), status: 400, param: "response_format.json_schema"},
		{name: "bad reasoning effort", path: "/v1/chat/completions", body: withField(`"reasoning_effort":"max"`), status: 400, param: "reasoning_effort"},
		{name: "unknown model", path: "/v1/chat/completions", body: chat, chatErr: fmt.Errorf("%w: model \"m\" not found", backend.ErrModelNotFound), status: 404, code: "model_not_found", param: "model"},
		{name: "overloaded", path: "/v1/chat/completions", body: chat, chatErr: fmt.Errorf("%w: busy", backend.ErrOverloaded), status: 503, code: "backend_overloaded", retryAfter: "1"},
		{name: "unreachable", path: "/v1/chat/completions", body: chat, chatErr: fmt.Errorf("%w: refused", backend.ErrUnavailable), status: 503, code: "backend_unavailable", retryAfter: "2"},
		{name: "model loading", path: "/v1/chat/completions", body: chat, chatErr: fmt.Errorf("wait: %w", &router.LoadingError{Deployment: "m", Progress: "pulling 37% on node n2", RetryAfter: 5 * time.Second}), status: 503, errType: "service_unavailable_error", code: "model_loading", retryAfter: "5"},
		{name: "client over its share", path: "/v1/chat/completions", body: chat, chatErr: &admit.RejectError{Reason: admit.ErrKeyOverShare, RetryAfter: 2500 * time.Millisecond}, status: 429, errType: "rate_limit_error", code: "rate_limit_exceeded", retryAfter: "3"},
		{name: "queue wait too long", path: "/v1/chat/completions", body: chat, chatErr: &admit.RejectError{Reason: admit.ErrWaitTooLong, RetryAfter: 4 * time.Second}, status: 503, code: "server_overloaded", retryAfter: "4"},
		{name: "rate limited over a hop", path: "/v1/chat/completions", body: chat, chatErr: fmt.Errorf("%w: slow down", backend.ErrRateLimited), status: 429, code: "rate_limit_exceeded", retryAfter: "1"},
		{name: "no replica in the jurisdiction", path: "/v1/chat/completions", body: chat, chatErr: &router.ResidencyError{Model: "m", Allowed: []string{"CH"}, Elsewhere: []string{"EU"}}, status: 400, code: "residency_unsatisfiable"},
		{name: "jurisdiction's replica not ready", path: "/v1/chat/completions", body: chat, chatErr: &router.ResidencyError{Model: "m", Allowed: []string{"EU"}, NotReady: true}, status: 503, code: "no_ready_replica_in_jurisdiction", retryAfter: "5"},
		{name: "bad jurisdiction header", path: "/v1/chat/completions", body: chat, header: [2]string{HeaderJurisdiction, "EU;US"}, status: 400, code: "invalid_jurisdiction"},
		{name: "backend rejects", path: "/v1/chat/completions", body: chat, chatErr: fmt.Errorf("%w: no thinking", backend.ErrBadRequest), status: 400, errType: "invalid_request_error"},
		{name: "backend fails", path: "/v1/chat/completions", body: chat, chatErr: fmt.Errorf("%w: boom", backend.ErrFailed), status: 502},
		{name: "bug is 500", path: "/v1/chat/completions", body: chat, chatErr: fmt.Errorf("nil map"), status: 500, code: "internal_error"},
		{name: "wrong method", method: "GET", path: "/v1/chat/completions", status: 405, code: "method_not_allowed"},
		{name: "unknown route", path: "/v1/nothing", body: chat, status: 404, code: "unknown_url"},
		{name: "embeddings bad format", path: "/v1/embeddings", body: `{"model":"m","input":"x","encoding_format":"hex"}`, status: 400, param: "encoding_format"},
		{name: "embeddings no input", path: "/v1/embeddings", body: `{"model":"m"}`, status: 400, param: "input"},
		{name: "embeddings tokens", path: "/v1/embeddings", body: `{"model":"m","input":[[1,2]]}`, status: 400, param: "input"},
		{name: "completions no prompt", path: "/v1/completions", body: `{"model":"m"}`, status: 400, param: "prompt"},
		{name: "completions prompt list", path: "/v1/completions", body: `{"model":"m","prompt":["a","b"]}`, status: 400, param: "prompt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{chat: func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error {
				if tc.chatErr == nil {
					t.Error("the backend was called for a request that should fail first")
				}
				return tc.chatErr
			}}
			url, _ := startServer(t, be)
			checkOpenAIError(t, url, tc)
		})
	}
}

func checkOpenAIError(t *testing.T, url string, tc errorCase) {
	t.Helper()
	method := tc.method
	if method == "" {
		method = "POST"
	}
	req, _ := http.NewRequest(method, url+tc.path, strings.NewReader(tc.body))
	req.Header.Set("Content-Type", "application/json")
	if tc.header[0] != "" {
		req.Header.Set(tc.header[0], tc.header[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != tc.status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
	}
	var body struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("not an OpenAI error object: %s", raw)
	}
	if body.Error.Message == "" || body.Error.Type == "" {
		t.Errorf("error without message or type: %s", raw)
	}
	if tc.errType != "" && body.Error.Type != tc.errType {
		t.Errorf("type %q, want %q", body.Error.Type, tc.errType)
	}
	if tc.param != "" && (body.Error.Param == nil || *body.Error.Param != tc.param) {
		t.Errorf("param %v, want %q: %s", body.Error.Param, tc.param, raw)
	}
	if tc.code != "" && (body.Error.Code == nil || *body.Error.Code != tc.code) {
		t.Errorf("code %v, want %q: %s", body.Error.Code, tc.code, raw)
	}
	if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
		t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
	}
}

func TestBodyLimit(t *testing.T) {
	url, _ := startServer(t, &fakeBackend{}, func(c *Config) { c.BodyLimit = 1024 })
	big := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 4096) + `"}]}`
	checkOpenAIError(t, url, errorCase{path: "/v1/chat/completions", body: big, status: 413, code: "request_too_large"})
}

func TestOllamaErrors(t *testing.T) {
	cases := []struct {
		name   string
		path   string
		body   string
		err    error
		status int
	}{
		{name: "bad json", path: "/api/chat", body: `{`, status: 400},
		{name: "missing model", path: "/api/chat", body: `{"messages":[]}`, status: 400},
		{name: "generate missing model", path: "/api/generate", body: `{"prompt":"x"}`, status: 400},
		{name: "unknown model", path: "/api/chat", body: `{"model":"x","messages":[]}`, err: backend.ErrModelNotFound, status: 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{chat: func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error { return tc.err }}
			url, _ := startServer(t, be)
			resp, err := client.Post(url+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.status, body)
			}
			if msg, ok := body["error"].(string); !ok || msg == "" {
				t.Errorf("want Ollama's {\"error\": \"...\"}, got %v", body)
			}
		})
	}
}
