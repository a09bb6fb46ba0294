package ollamasim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
)

const (
	chatModel  = "llama3.2:1b"
	thinkModel = "deepseek-r1:1.5b"
	embedModel = "nomic-embed-text"
)

// testCtx is a context that ends with the test or after a generous bound.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func boolPtr(b bool) *bool { return &b }

func userMsg(text string) []api.Message {
	return []api.Message{{Role: "user", Content: text}}
}

// chat runs a chat request and returns every response message.
func chat(ctx context.Context, c *api.Client, req *api.ChatRequest) ([]api.ChatResponse, error) {
	var out []api.ChatResponse
	err := c.Chat(ctx, req, func(r api.ChatResponse) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// generate runs a generate request and returns every response message.
func generate(ctx context.Context, c *api.Client, req *api.GenerateRequest) ([]api.GenerateResponse, error) {
	var out []api.GenerateResponse
	err := c.Generate(ctx, req, func(r api.GenerateResponse) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// mustChat is chat that fails the test on error or on a missing final
// message; it returns the joined content, the joined thinking and the
// final message.
func mustChat(t *testing.T, c *api.Client, req *api.ChatRequest) (string, string, api.ChatResponse) {
	t.Helper()
	resps, err := chat(testCtx(t), c, req)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if len(resps) == 0 || !resps[len(resps)-1].Done {
		t.Fatalf("chat: no final message in %d responses", len(resps))
	}
	var content, thinking strings.Builder
	for _, r := range resps {
		content.WriteString(r.Message.Content)
		thinking.WriteString(r.Message.Thinking)
	}
	return content.String(), thinking.String(), resps[len(resps)-1]
}

// statusOf is the HTTP status of an Ollama client error, or 0.
func statusOf(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.StatusCode
	}
	return 0
}

// errorText is the server's error message of an Ollama client error.
func errorText(err error) string {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.ErrorMessage
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// rawPost sends a raw body and returns status, content type and body.
func rawPost(t *testing.T, s *ollamasim.Server, path, body string) (int, string, string) {
	t.Helper()
	return rawDo(t, s, http.MethodPost, path, body)
}

func rawDo(t *testing.T, s *ollamasim.Server, method, path, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// toJSON marshals v or fails the test.
func toJSON(t *testing.T, v any) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// waitFor awaits a stats condition or fails the test.
func waitFor(t *testing.T, s *ollamasim.Server, what string, cond func(ollamasim.Stats) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v; stats %+v", what, err, s.Stats())
	}
}

// slowModel generates one token per second for a long time, so requests
// holding it stay in flight until they are cancelled.
func slowModel(name string, parallel, maxQueue int) ollamasim.ModelConfig {
	return ollamasim.ModelConfig{
		Name: name, TokensPerSecond: 1, ResponseTokens: 10000, Parallel: parallel, MaxQueue: maxQueue,
	}
}

// lastRecord is the most recent log entry for an endpoint.
func lastRecord(t *testing.T, s *ollamasim.Server, endpoint string) ollamasim.RequestRecord {
	t.Helper()
	// A record is written when the handler returns, which can be just
	// after the client has read the last byte.
	waitFor(t, s, "no request in flight", func(st ollamasim.Stats) bool { return st.InFlight == 0 })
	recs := s.Requests()
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Endpoint == endpoint {
			return recs[i]
		}
	}
	t.Fatalf("no record for %s in %d records", endpoint, len(recs))
	return ollamasim.RequestRecord{}
}
