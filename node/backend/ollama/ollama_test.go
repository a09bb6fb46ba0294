package ollama

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/node/backend"
)

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"not found", 404, `{"error":"model \"x\" not found, try pulling it first"}`, backend.ErrModelNotFound},
		{"busy", 503, `{"error":"server busy, please try again.  maximum pending requests exceeded"}`, backend.ErrOverloaded},
		{"rate limited", 429, `{"error":"slow down"}`, backend.ErrRateLimited},
		{"bad request", 400, `{"error":"\"m\" does not support thinking"}`, backend.ErrBadRequest},
		{"runner crashed", 500, `{"error":"llama runner process has terminated"}`, backend.ErrFailed},
		{"bad gateway", 502, `not json`, backend.ErrUnavailable},
		{"error line mid-stream", 200, "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"a\"}}\n{\"error\":\"out of memory\"}\n", backend.ErrFailed},
		{"stream without done", 200, "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"a\"}}\n", backend.ErrTruncated},
		{"empty body", 200, "", backend.ErrTruncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := New(srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Chat(context.Background(), &api.ChatRequest{Model: "m"}, func(api.ChatResponse) error { return nil })
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, _ := New("http://"+addr, nil)
	if err := c.Heartbeat(context.Background()); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

func TestCancelledIsNotAFailure(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"a\"}}\n"))
		w.(http.Flusher).Flush()
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c, _ := New(srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	err := c.Chat(ctx, &api.ChatRequest{Model: "m"}, func(api.ChatResponse) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestBadURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:11434", "ftp://x", "http://"} {
		if _, err := New(u, nil); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func TestLongLines(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // longer than the pooled read buffer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":%q}}\n", long)
		fmt.Fprint(w, "{\"model\":\"m\",\"done\":true,\"message\":{\"role\":\"assistant\",\"content\":\"\"}}\n")
	}))
	defer srv.Close()
	c, _ := New(srv.URL, nil)
	var got strings.Builder
	err := c.Chat(context.Background(), &api.ChatRequest{Model: "m"}, func(r api.ChatResponse) error {
		got.WriteString(r.Message.Content)
		return nil
	})
	if err != nil || got.String() != long {
		t.Fatalf("err %v, got %d bytes, want %d", err, got.Len(), len(long))
	}
}
