package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sovra/sovra/node/auth"
)

// nested is a chat request whose options nest depth arrays deep.
func nested(depth int) string {
	return `{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"x":` +
		strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}}`
}

// chatOf is a chat request of n tiny messages.
func chatOf(model string, n int) string {
	msgs := strings.TrimSuffix(strings.Repeat(`{"role":"user","content":"hi"},`, n), ",")
	return `{"model":"` + model + `","stream":false,"messages":[` + msgs + `]}`
}

func TestRequestSizeLimits(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	cases := []struct {
		name   string
		path   string
		body   string
		status int
		param  string
	}{
		{name: "most messages allowed", path: "/v1/chat/completions", body: chatOf("m", 4096), status: 200},
		{name: "too many messages", path: "/v1/chat/completions", body: chatOf("m", 4097), status: 400, param: "messages"},
		{name: "too many messages, native", path: "/api/chat", body: chatOf("m", 4097), status: 400},
		{name: "too many embedding inputs", path: "/v1/embeddings", body: `{"model":"m","input":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 4097), ",") + `]}`, status: 400, param: "input"},
		{name: "deepest nesting allowed", path: "/api/chat", body: nested(61), status: 200},
		{name: "nested too deep", path: "/v1/chat/completions", body: nested(64), status: 400},
		{name: "nested too deep, native", path: "/api/chat", body: nested(64), status: 400},
		{name: "too many values", path: "/api/chat", body: `{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"x":[` + strings.TrimSuffix(strings.Repeat("0,", 300000), ",") + `]}}`, status: 400},
		{name: "longest model name", path: "/v1/chat/completions", body: chatOf(strings.Repeat("m", 256), 1), status: 200},
		{name: "model name too long", path: "/v1/chat/completions", body: chatOf(long, 1), status: 400, param: "model"},
		{name: "model name too long, native", path: "/api/chat", body: chatOf(long, 1), status: 400},
		{name: "model name too long, show", path: "/api/show", body: `{"name":"` + long + `"}`, status: 400},
		{name: "model name too long, path", path: "/v1/models/" + long[:1000], status: 400},
	}
	be := &fakeBackend{chat: words("ok")}
	url, _ := startServer(t, be)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodPost
			if tc.body == "" {
				method = http.MethodGet
			}
			status, body := do(t, method, url+tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %.300s", status, tc.status, body)
			}
			if status == 200 {
				return
			}
			if len(body) > 1024 || strings.Contains(body, long[:300]) {
				t.Errorf("the refusal echoes the request (%d bytes)", len(body))
			}
			checkErrorFormat(t, tc.path, tc.param, body)
		})
	}
}

// checkErrorFormat checks an error body is in the format of its route
// family: OpenAI's error object on /v1, Ollama's {"error": "..."} on /api.
func checkErrorFormat(t *testing.T, path, param, body string) {
	t.Helper()
	if familyOf(path) == familyOllama {
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
			t.Errorf("not an Ollama error: %.300s", body)
		}
		return
	}
	var e openAIBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" || e.Error.Type != typeInvalid {
		t.Fatalf("not an OpenAI invalid_request_error: %.300s", body)
	}
	if param != "" && (e.Error.Param == nil || *e.Error.Param != param) {
		t.Errorf("param %v, want %q", e.Error.Param, param)
	}
}

func do(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(raw)
}

func TestLargeHeadersAreAccepted(t *testing.T) {
	jwt := "Bearer " + strings.Repeat("j", 16<<10)
	keys := auth.NewStaticKeys(map[string]auth.Principal{strings.TrimPrefix(jwt, "Bearer "): {KeyID: "jwt", Role: auth.RoleUser}})
	url, _ := startServer(t, &fakeBackend{chat: words("ok")}, func(c *Config) { c.Keys = keys })
	cases := []struct {
		name   string
		header [2]string
		status int
	}{
		{name: "16 KiB JWT", header: [2]string{"Authorization", jwt}, status: 200},
		{name: "16 KiB of proxy headers", header: [2]string{"X-Forwarded-For", strings.TrimSuffix(strings.Repeat("10.0.0.1, ", 16<<10/10), ", ")}, status: 200},
		{name: "headers past the limit", header: [2]string{"X-Big", strings.Repeat("h", 64<<10)}, status: 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, http.MethodPost, url+"/v1/chat/completions", chatOf("m", 1), tc.header[0], tc.header[1])
			if status != tc.status {
				t.Fatalf("status %d, want %d: %.200s", status, tc.status, body)
			}
		})
	}
}

// dialFrom opens a connection to addr from the loopback address ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// get sends GET /healthz on c and returns the status, or 0 when the
// server closed the connection without an answer.
func get(t *testing.T, c net.Conn) int {
	t.Helper()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func TestConnectionsPerClientAreCapped(t *testing.T) {
	url, _ := startServer(t, &fakeBackend{}, func(c *Config) { c.MaxConnsPerIP = 2 })
	addr := strings.TrimPrefix(url, "http://")
	for i := range 2 {
		if got := get(t, dialFrom(t, "127.0.0.1", addr)); got != 200 {
			t.Fatalf("connection %d from 127.0.0.1: status %d", i+1, got)
		}
	}
	if got := get(t, dialFrom(t, "127.0.0.1", addr)); got != http.StatusTooManyRequests && got != 0 {
		t.Fatalf("third connection from 127.0.0.1: status %d, want it refused", got)
	}
	if got := get(t, dialFrom(t, "127.0.0.2", addr)); got != 200 {
		t.Fatalf("connection from 127.0.0.2 while 127.0.0.1 is at its cap: status %d", got)
	}
}

func TestConnectionsAreCapped(t *testing.T) {
	url, _ := startServer(t, &fakeBackend{}, func(c *Config) { c.MaxConns = 2 })
	addr := strings.TrimPrefix(url, "http://")
	for i, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		if got := get(t, dialFrom(t, ip, addr)); got != 200 {
			t.Fatalf("connection %d: status %d", i+1, got)
		}
	}
	if got := get(t, dialFrom(t, "127.0.0.3", addr)); got != http.StatusServiceUnavailable && got != 0 {
		t.Fatalf("connection past the total cap: status %d, want it refused", got)
	}
}

func TestPanicsAreRecovered(t *testing.T) {
	panicky := func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error { panic("boom") }
	cases := []struct {
		name string
		path string
		body string
	}{
		{name: "openai", path: "/v1/chat/completions", body: `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{name: "native", path: "/api/chat", body: `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`},
		{name: "streamed", path: "/v1/chat/completions", body: streamBody},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.ErrorLevel)
			s := New(testConfig(), &fakeBackend{chat: panicky}, nil, zap.New(core))
			url := serve(t, s)
			req, _ := http.NewRequest(http.MethodPost, url+tc.path, strings.NewReader(tc.body))
			req.Header.Set(fiber.HeaderXRequestID, "req-panic")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("the node did not answer: %v", err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 500 || !strings.Contains(string(raw), "req-panic") {
				t.Fatalf("status %d, body %s: want 500 naming the request id", resp.StatusCode, raw)
			}
			entries := logs.FilterMessage("panic").All()
			if len(entries) != 1 || !strings.Contains(fmt.Sprint(entries[0].ContextMap()["stack"]), "TestPanicsAreRecovered") {
				t.Fatalf("want one panic logged with its stack, got %+v", entries)
			}
			if status, _ := do(t, http.MethodGet, url+"/healthz", ""); status != 200 {
				t.Fatalf("after the panic /healthz answered %d", status)
			}
		})
	}
}
