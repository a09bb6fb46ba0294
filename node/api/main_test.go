package api

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
)

// helperEnv, when set in the environment, makes the test binary serve the
// API with its default settings on a loopback port instead of running the
// tests: the memory tests measure that process alone.
const helperEnv = "SOVRA_API_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "serve" {
		os.Exit(serveHelper())
	}
	os.Exit(m.Run())
}

// serveHelper serves the API over a backend that answers every chat, prints
// its address and serves until killed.
func serveHelper() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		return words("ok")(ctx, req, fn)
	}}
	s := New(testConfig(), be, nil, zap.NewNop())
	fmt.Println(ln.Addr().String())
	if err := s.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
