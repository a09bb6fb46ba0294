package api

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testwait"
)

// TestChatRequestReachesBackend checks what the backend receives for the
// OpenAI request fields sovra passes on.
func TestChatRequestReachesBackend(t *testing.T) {
	base := `"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"hi"}]`
	cases := []struct {
		name  string
		extra string
		check func(t *testing.T, r *api.ChatRequest)
	}{
		{"developer role becomes system", ``, func(t *testing.T, r *api.ChatRequest) {
			if r.Messages[0].Role != "system" || r.Messages[1].Role != "user" {
				t.Errorf("roles %q %q", r.Messages[0].Role, r.Messages[1].Role)
			}
		}},
		{"max_completion_tokens", `"max_completion_tokens":7`, wantOption("num_predict", 7.0)},
		{"max_tokens wins", `"max_tokens":5,"max_completion_tokens":7`, wantOption("num_predict", 5.0)},
		{"stop string", `"stop":"END"`, wantOption("stop", []any{"END"})},
		{"stop list", `"stop":["a","b"]`, wantOption("stop", []any{"a", "b"})},
		{"temperature", `"temperature":0.2`, wantOption("temperature", 0.2)},
		{"top_p", `"top_p":0.5`, wantOption("top_p", 0.5)},
		{"seed", `"seed":42`, wantOption("seed", 42.0)},
		{"frequency penalty", `"frequency_penalty":0.5`, wantOption("frequency_penalty", 0.5)},
		{"presence penalty", `"presence_penalty":-0.5`, wantOption("presence_penalty", -0.5)},
		{"json mode", `"response_format":{"type":"json_object"}`, func(t *testing.T, r *api.ChatRequest) {
			if string(r.Format) != `"json"` {
				t.Errorf("format %s", r.Format)
			}
		}},
		{"json schema", `"response_format":{"type":"json_schema","json_schema":{"name":"u","schema":{"type":"object"}}}`, func(t *testing.T, r *api.ChatRequest) {
			if string(r.Format) != `{"type":"object"}` {
				t.Errorf("format %s", r.Format)
			}
		}},
		{"reasoning effort", `"reasoning_effort":"high"`, wantThink("high")},
		{"minimal effort is low", `"reasoning_effort":"minimal"`, wantThink("low")},
		{"no reasoning", `"reasoning_effort":"none"`, wantThink(false)},
		{"tools", `"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"string"}}}}}]`, func(t *testing.T, r *api.ChatRequest) {
			if len(r.Tools) != 1 || r.Tools[0].Function.Name != "f" {
				t.Errorf("tools %+v", r.Tools)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan *api.ChatRequest, 1)
			be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
				got <- req
				return words("ok")(ctx, req, fn)
			}}
			url, _ := startServer(t, be)
			resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader("{"+base+sep(tc.extra)+tc.extra+"}"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			tc.check(t, roundTrip(t, <-got))
		})
	}
}

func sep(extra string) string {
	if extra == "" {
		return ""
	}
	return ","
}

// roundTrip passes the request through JSON, as it travels to Ollama.
func roundTrip(t *testing.T, r *api.ChatRequest) *api.ChatRequest {
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var out api.ChatRequest
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func wantOption(key string, want any) func(*testing.T, *api.ChatRequest) {
	return func(t *testing.T, r *api.ChatRequest) {
		got, _ := json.Marshal(r.Options[key])
		exp, _ := json.Marshal(want)
		if string(got) != string(exp) {
			t.Errorf("option %s = %s, want %s", key, got, exp)
		}
	}
}

func wantThink(want any) func(*testing.T, *api.ChatRequest) {
	return func(t *testing.T, r *api.ChatRequest) {
		if r.Think == nil || r.Think.Value != want {
			t.Errorf("think %+v, want %v", r.Think, want)
		}
	}
}

// TestRequestLogHasNoContent checks the request log names the model, status
// and token counts, and never the prompt or the answer.
func TestRequestLogHasNoContent(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	be := &fakeBackend{chat: words("SECRET-ANSWER")}
	cfg := DefaultConfig()
	cfg.AdminToken = testauth.Token
	s := New(cfg, be, nil, zap.New(core))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = s.Serve(ln) }()
	defer s.Shutdown(context.Background())
	for _, stream := range []string{"false", "true"} {
		body := `{"model":"m","stream":` + stream + `,"messages":[{"role":"user","content":"SECRET-PROMPT"}]}`
		resp, err := client.Post("http://"+ln.Addr().String()+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		sseEvents(t, resp.Body)
		resp.Body.Close()
	}
	testwait.For(t, 5*time.Second, "two request log lines", func() bool { return logs.FilterMessage("request").Len() == 2 })
	for _, e := range logs.All() {
		ctx := e.ContextMap()
		line, _ := json.Marshal(ctx)
		if strings.Contains(string(line), "SECRET") || strings.Contains(e.Message, "SECRET") {
			t.Fatalf("log leaks content: %s", line)
		}
		if e.Message != "request" {
			continue
		}
		if ctx["model"] != "m" || ctx["status"] != int64(200) || ctx["prompt_tokens"] != int64(3) || ctx["completion_tokens"] != int64(1) || ctx["id"] == "" {
			t.Errorf("request log lacks fields: %s", line)
		}
		if client, _ := ctx["client"].(string); !strings.HasPrefix(client, "127.0.0.1:") || ctx["key_id"] != "admin" {
			t.Errorf("request log lacks the client's address or key id: %s", line)
		}
		if strings.Contains(string(line), testauth.Token) {
			t.Fatalf("request log leaks the token: %s", line)
		}
	}
}

// TestInternalRequestsLogAtDebug checks that traffic between nodes (here a
// load exchange, refused by a node outside any cluster) is logged at debug,
// and inference at info.
func TestInternalRequestsLogAtDebug(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	cfg := DefaultConfig()
	cfg.AdminToken = testauth.Token
	s := New(cfg, &fakeBackend{chat: words("hi")}, nil, zap.New(core))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = s.Serve(ln) }()
	defer s.Shutdown(context.Background())
	base := "http://" + ln.Addr().String()
	for _, path := range []string{"/internal/v1/load", "/v1/models"} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	testwait.For(t, 5*time.Second, "two request log lines", func() bool { return logs.FilterMessage("request").Len() == 2 })
	for _, e := range logs.FilterMessage("request").All() {
		want := zap.InfoLevel
		if path := e.ContextMap()["path"]; path == "/internal/v1/load" {
			want = zap.DebugLevel
		}
		if e.Level != want {
			t.Errorf("%v logged at %v, want %v", e.ContextMap()["path"], e.Level, want)
		}
	}
}

// TestReadTimeoutCutsSlowClients checks that a client that never finishes
// sending its request is disconnected.
func TestReadTimeoutCutsSlowClients(t *testing.T) {
	url, _ := startServer(t, &fakeBackend{}, func(c *Config) { c.ReadTimeout = 200 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := conn.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server kept a stalled request open")
			}
			return // closed by the server
		}
	}
}
