package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/internal/testauth"
)

// testApp is the API over a fake backend, called in process.
func testApp(t *testing.T, edit ...func(*Config)) func(*http.Request) (int, http.Header, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.AdminToken = testauth.Token
	for _, e := range edit {
		e(&cfg)
	}
	s := New(cfg, &fakeBackend{chat: words("hi")}, nil, zaptest.NewLogger(t))
	return func(req *http.Request) (int, http.Header, string) {
		t.Helper()
		resp, err := s.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
}

const (
	chatJSON     = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	messagesJSON = `{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`
	ollamaJSON   = `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`
	wrongToken   = "wrong-secret-0123456789"
)

// TestInferenceNeedsTheToken: every inference route refuses a request
// without the management token, or with a wrong one, with a 401 in its
// family's error format, and never echoes what it was sent.
func TestInferenceNeedsTheToken(t *testing.T) {
	do := testApp(t)
	routes := []struct{ name, method, path, body string }{
		{"openai chat", "POST", "/v1/chat/completions", chatJSON},
		{"openai models", "GET", "/v1/models", ""},
		{"openai unknown route", "GET", "/v1/nothing", ""},
		{"anthropic messages", "POST", "/v1/messages", messagesJSON},
		{"ollama chat", "POST", "/api/chat", ollamaJSON},
		{"ollama tags", "GET", "/api/tags", ""},
		{"ollama version", "GET", "/api/version", ""},
	}
	creds := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"no credential", nil, 401},
		{"wrong bearer", map[string]string{"Authorization": "Bearer " + wrongToken}, 401},
		{"not a bearer", map[string]string{"Authorization": "Basic " + testauth.Token}, 401},
		{"the token", map[string]string{"Authorization": "Bearer " + testauth.Token}, 200},
	}
	for _, r := range routes {
		for _, c := range creds {
			t.Run(r.name+"/"+c.name, func(t *testing.T) {
				req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
				req.Header.Set("Content-Type", "application/json")
				for k, v := range c.header {
					req.Header.Set(k, v)
				}
				st, h, body := do(req)
				want := c.want
				if want == 200 && r.path == "/v1/nothing" {
					want = 404
				}
				if st != want {
					t.Fatalf("status %d, want %d: %s", st, want, body)
				}
				if st == 401 {
					checkAuthError(t, r.path, h, body)
				}
			})
		}
	}
}

// checkAuthError checks a 401 body against its family's format.
func checkAuthError(t *testing.T, path string, h http.Header, body string) {
	t.Helper()
	if strings.Contains(body, wrongToken) || strings.Contains(body, testauth.Token) {
		t.Fatalf("the refusal echoes a token: %s", body)
	}
	if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
	}
	var e struct {
		Type  string          `json:"type"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var obj struct{ Type, Code, Message string }
	switch {
	case strings.HasPrefix(path, "/api/"):
		var msg string
		if json.Unmarshal(e.Error, &msg) != nil || msg == "" {
			t.Fatalf("not Ollama's format: %s", body)
		}
	case strings.HasPrefix(path, "/v1/messages"):
		if json.Unmarshal(e.Error, &obj) != nil || e.Type != "error" || obj.Type != "authentication_error" {
			t.Fatalf("not Anthropic's format: %s", body)
		}
	default:
		if json.Unmarshal(e.Error, &obj) != nil || obj.Type != "invalid_request_error" || obj.Code != "invalid_api_key" {
			t.Fatalf("not OpenAI's format: %s", body)
		}
	}
}

// TestAnthropicKeyHeader: Anthropic clients send x-api-key, which counts
// on /v1/messages and nowhere else.
func TestAnthropicKeyHeader(t *testing.T) {
	do := testApp(t)
	cases := []struct {
		name, path, body, key string
		want                  int
	}{
		{"messages with the key", "/v1/messages", messagesJSON, testauth.Token, 200},
		{"messages with a wrong key", "/v1/messages", messagesJSON, wrongToken, 401},
		{"chat completions", "/v1/chat/completions", chatJSON, testauth.Token, 401},
		{"ollama chat", "/api/chat", ollamaJSON, testauth.Token, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("x-api-key", tc.key)
			if st, _, body := do(req); st != tc.want {
				t.Fatalf("status %d, want %d: %s", st, tc.want, body)
			}
		})
	}
}

// TestNoTokenNoEntry: a server configured without any credential refuses
// everyone instead of serving openly.
func TestNoTokenNoEntry(t *testing.T) {
	do := testApp(t, func(c *Config) { c.AdminToken = "" })
	for _, h := range []string{"", "Bearer ", "Bearer x"} {
		req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(chatJSON))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", h)
		if st, _, body := do(req); st != 401 {
			t.Fatalf("Authorization %q: %d %s", h, st, body)
		}
	}
}

// TestPublicRoutes: health, metrics and / answer without a credential.
func TestPublicRoutes(t *testing.T) {
	do := testApp(t)
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/"} {
		if st, _, body := do(httptest.NewRequest("GET", path, nil)); st != 200 {
			t.Errorf("%s: %d %s", path, st, body)
		}
	}
}

// TestUnauthenticatedBodiesAreNotRead: a request without a credential is
// answered 401 before its body arrives, so an unknown client cannot make
// the node buffer more than fasthttp's first 8 KiB. The rest of the body
// here never comes.
func TestUnauthenticatedBodiesAreNotRead(t *testing.T) {
	url, _ := startServer(t, &fakeBackend{chat: words("ok")})
	for _, path := range []string{"/v1/chat/completions", "/v1/messages", "/api/chat"} {
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n%s", path, strings.Repeat(" ", 16<<10))
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
		})
	}
}

// TestOpenInference: with --auth=off a request without a credential is
// served on /v1 and /api as the anonymous principal, a wrong credential is
// still refused, and nothing else opens.
func TestOpenInference(t *testing.T) {
	do := testApp(t, func(c *Config) { c.OpenInference = true })
	cases := []struct {
		name, path, body, header string
		want                     int
	}{
		{"chat without a credential", "/v1/chat/completions", chatJSON, "", 200},
		{"ollama chat without a credential", "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}`, "", 200},
		{"anthropic without a credential", "/v1/messages", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "", 200},
		{"a wrong key is still refused", "/v1/chat/completions", chatJSON, "Bearer wrong", 401},
		{"the management token still works", "/v1/chat/completions", chatJSON, "Bearer " + testauth.Token, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			if st, _, body := do(req); st != tc.want {
				t.Fatalf("status %d, want %d: %s", st, tc.want, body)
			}
		})
	}
	// Without the setting the same request is refused.
	closed := testApp(t)
	req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(chatJSON))
	req.Header.Set("Content-Type", "application/json")
	if st, _, _ := closed(req); st != 401 {
		t.Fatalf("without --auth=off: %d, want 401", st)
	}
}
