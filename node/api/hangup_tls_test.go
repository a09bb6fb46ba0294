package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/internal/testcerts"
)

// TestClientHangupOverTLSCancelsBackend: over TLS the socket cannot be
// peeked for an end of file (a close_notify record comes first), yet a
// client that hangs up must still free its backend, streamed or not.
func TestClientHangupOverTLSCancelsBackend(t *testing.T) {
	ca := testcerts.NewCA(t)
	for _, streamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", streamed), func(t *testing.T) {
			cancelled := make(chan time.Time, 1)
			started := make(chan struct{}, 1)
			be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
				if streamed {
					if err := fn(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Content: "x"}}); err != nil {
						return err
					}
				}
				started <- struct{}{}
				<-ctx.Done()
				cancelled <- time.Now()
				return ctx.Err()
			}}
			s := New(DefaultConfig(), be, nil, zaptest.NewLogger(t))
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := tls.NewListener(raw, ca.Config(t, "server"))
			done := make(chan error, 1)
			go func() { done <- s.Serve(ln) }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = s.Shutdown(ctx)
				<-done
			})
			conn, err := tls.Dial("tcp", raw.Addr().String(), ca.Config(t, "client"))
			if err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf(`{"model":"m","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, streamed)
			fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			<-started
			if streamed {
				buf := make([]byte, 1)
				if _, err := conn.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
			hungUp := time.Now()
			conn.Close()
			select {
			case at := <-cancelled:
				if d := at.Sub(hungUp); d > time.Second {
					t.Fatalf("backend cancelled %v after the hang-up, want within 1s", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the backend call was not cancelled after the client hung up over TLS")
			}
		})
	}
}
