package api

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/node/backend"
)

// fakeBackend is a backend.Backend whose chat and generate behaviour each
// test sets; the other calls answer fixed data.
type fakeBackend struct {
	chat     func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error
	generate func(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error
	embed    func(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error)
	err      error // returned by the listing calls when set
}

func (f *fakeBackend) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	return f.chat(ctx, req, fn)
}

func (f *fakeBackend) Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	return f.generate(ctx, req, fn)
}

func (f *fakeBackend) Embed(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error) {
	return f.embed(ctx, req)
}

func (f *fakeBackend) List(context.Context) (*api.ListResponse, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &api.ListResponse{Models: []api.ListModelResponse{{Name: "m:latest", Model: "m:latest"}}}, nil
}

func (f *fakeBackend) ListRunning(context.Context) (*api.ProcessResponse, error) {
	return &api.ProcessResponse{}, f.err
}

func (f *fakeBackend) Show(context.Context, *api.ShowRequest) (*api.ShowResponse, error) {
	return &api.ShowResponse{}, f.err
}

func (f *fakeBackend) Pull(context.Context, *api.PullRequest, func(api.ProgressResponse) error) error {
	return f.err
}

func (f *fakeBackend) Delete(context.Context, *api.DeleteRequest) error { return f.err }
func (f *fakeBackend) Copy(context.Context, *api.CopyRequest) error     { return f.err }

func (f *fakeBackend) Version(context.Context) (string, error) { return "0.0.0", f.err }

func (f *fakeBackend) Heartbeat(context.Context) error { return f.err }

// words streams the given pieces as chat responses, then a final one.
func words(pieces ...string) func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error {
	return func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		for _, p := range pieces {
			if err := fn(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Content: p}}); err != nil {
				return err
			}
		}
		return fn(api.ChatResponse{Model: req.Model, Done: true, DoneReason: "stop", Message: api.Message{Role: "assistant"},
			Metrics: api.Metrics{PromptEvalCount: 3, EvalCount: len(pieces)}})
	}
}

// startServer serves the API over be (a fakeBackend, or a router over
// one) on a loopback port.
func startServer(t *testing.T, be backend.Backend, edit ...func(*Config)) (string, *Server) {
	t.Helper()
	cfg := testConfig()
	cfg.LoopbackOnly = true
	for _, e := range edit {
		e(&cfg)
	}
	s := New(cfg, be, nil, zaptest.NewLogger(t))
	return serve(t, s), s
}

// serve serves s on a loopback port until the test ends.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return "http://" + ln.Addr().String()
}

// testConfig is DefaultConfig with testauth.Token as the management
// token, which client sends.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.AdminToken = testauth.Token
	return cfg
}

// client sends the servers' management token.
var client = testauth.NewClient(nil, 10*time.Second)
