package synchttp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server starts h and counts the connections it accepts.
func server(t *testing.T, h http.HandlerFunc, tls bool) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, &conns
}

func client(t *testing.T, tr *Transport) *http.Client {
	t.Helper()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// get sends a POST with a body and returns the answer's body.
func get(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	resp, err := hc.Post(url, "text/plain", strings.NewReader("ping"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	_, _ = w.Write(append([]byte("got "), b...))
}

func TestReusesOneConnection(t *testing.T) {
	srv, conns := server(t, echo, false)
	hc := client(t, New())
	for i := 0; i < 20; i++ {
		if got := get(t, hc, srv.URL); got != "got ping" {
			t.Fatalf("answer %d: %q", i, got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d connections, want 1", n)
	}
}

// TestConnectionsNotReused: each of these makes every request open a
// connection of its own.
func TestConnectionsNotReused(t *testing.T) {
	closing := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		echo(w, r)
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		set     func(*Transport)
	}{
		{"keep-alives disabled", echo, func(tr *Transport) { tr.DisableKeepAlives = true }},
		{"every idle connection too old", echo, func(tr *Transport) { tr.IdleConnTimeout = time.Nanosecond }},
		{"answers with Connection: close", closing, func(*Transport) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, conns := server(t, tc.handler, false)
			tr := New()
			tc.set(tr)
			hc := client(t, tr)
			for i := 0; i < 4; i++ {
				get(t, hc, srv.URL)
			}
			if n := conns.Load(); n != 4 {
				t.Fatalf("4 requests opened %d connections, want 4", n)
			}
		})
	}
}

func TestStreamsAsItArrives(t *testing.T) {
	release := make(chan struct{})
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "one\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "two\n")
	}, false)
	hc := client(t, New())
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "one\n" {
		t.Fatalf("first line before the second was written: %q, %v", line, err)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "two\n" {
		t.Fatalf("rest: %q, %v", rest, err)
	}
}

func TestCancelEndsABlockedBodyRead(t *testing.T) {
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			echo(w, r)
			return
		}
		_, _ = io.WriteString(w, "one\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}, false)
	hc := client(t, New())
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() { _, err := br.ReadString('\n'); read <- err }()
	cancel()
	select {
	case err := <-read:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled request's body read stayed blocked")
	}
	resp.Body.Close()
	get(t, hc, srv.URL)
	if n := conns.Load(); n != 2 {
		t.Fatalf("the cancelled request's connection was reused: %d connections, want 2", n)
	}
}

func TestCancelEndsAWaitForTheHeader(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, false)
	hc := client(t, New())
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	done := make(chan error, 1)
	go func() {
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled while waiting for the header: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled request stayed blocked waiting for its header")
	}
}

func TestEarlyCloseDiscardsTheConnection(t *testing.T) {
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 64<<10))
	}, false)
	hc := client(t, New())
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.Body.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	get(t, hc, srv.URL)
	if n := conns.Load(); n != 2 {
		t.Fatalf("a connection with an unread answer was reused: %d connections, want 2", n)
	}
}

func TestRetriesAConnectionTheServerClosed(t *testing.T) {
	srv, conns := server(t, echo, false)
	hc := client(t, New())
	get(t, hc, srv.URL)
	srv.CloseClientConnections() // the pooled connection is now closed by the server
	if got := get(t, hc, srv.URL); got != "got ping" {
		t.Fatalf("after the server closed the idle connection: %q", got)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestTLS(t *testing.T) {
	srv, conns := server(t, echo, true)
	tr := New()
	tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	hc := client(t, tr)
	for i := 0; i < 3; i++ {
		if got := get(t, hc, srv.URL); got != "got ping" {
			t.Fatalf("answer over TLS: %q", got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("3 requests over TLS opened %d connections, want 1", n)
	}
}

func TestErrorStatusKeepsTheConnection(t *testing.T) {
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such model", http.StatusNotFound)
	}, false)
	hc := client(t, New())
	for i := 0; i < 3; i++ {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || strings.TrimSpace(string(b)) != "no such model" {
			t.Fatalf("answer %d %q", resp.StatusCode, b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestUnsupportedScheme(t *testing.T) {
	hc := client(t, New())
	if _, err := hc.Get("ftp://127.0.0.1/x"); err == nil || !strings.Contains(err.Error(), "unsupported scheme") {
		t.Fatalf("ftp URL: %v", err)
	}
}
