package api

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

// TestShutdownIgnoresUnusedConnections checks that a connection that never
// carried a request (HTTP clients dial spares) does not hold up a graceful
// stop.
func TestShutdownIgnoresUnusedConnections(t *testing.T) {
	url, s := startServer(t, &fakeBackend{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testwait.For(t, 5*time.Second, "one open connection", func() bool { return s.app.Server().GetOpenConnectionsCount() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an unused connection open: %v", err)
	}
}
