package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/internal/testauth"
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
			cfg := DefaultConfig()
			cfg.AdminToken = testauth.Token
			s := New(cfg, blockingBackend(streamed, started, cancelled), nil, zaptest.NewLogger(t))
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
			hangUpCancels(t, conn, streamed, started, cancelled, "the client hung up over TLS")
		})
	}
}
