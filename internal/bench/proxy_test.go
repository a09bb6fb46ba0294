package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// startProxy runs a BaselineProxy in front of upstream on loopback.
func startProxy(t *testing.T, upstream *httptest.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := NewBaselineProxy(strings.TrimPrefix(upstream.URL, "http://"))
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		_ = p.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String()
}

func TestBaselineProxyRelaysWholeResponses(t *testing.T) {
	body := strings.Repeat(`{"message":{"content":"tok "}}`, 200)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/missing" {
			http.Error(w, "no such thing", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)+len(in)))
		_, _ = io.WriteString(w, body)
		_, _ = w.Write(in)
	}))
	defer up.Close()
	proxy := startProxy(t, up)

	for i := range 3 { // keep-alive: the same connections serve again
		resp, err := http.Post(proxy+"/api/chat?x=1", "application/json", strings.NewReader("REQ"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != body+"REQ" {
			t.Fatalf("request %d: status %d, body %d bytes (want %d)", i, resp.StatusCode, len(got), len(body)+3)
		}
		if resp.Header.Get("X-Upstream") != "yes" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("headers not relayed: %v", resp.Header)
		}
		if resp.ContentLength != int64(len(body)+3) {
			t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(body)+3)
		}
	}
	resp, err := http.Get(proxy + "/missing")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(got), "no such thing") {
		t.Errorf("error response: %d %q", resp.StatusCode, got)
	}
}

// TestBaselineProxyFlushesEachLine fails if the proxy holds back a line:
// the upstream sends the next line only once the client has received the
// previous one.
func TestBaselineProxyFlushesEachLine(t *testing.T) {
	const lines = 5
	received := make(chan struct{}, lines)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i := range lines {
			fmt.Fprintf(w, `{"message":{"content":"t%d"},"done":%v}`+"\n", i, i == lines-1)
			w.(http.Flusher).Flush()
			if i < lines-1 {
				select {
				case <-received:
				case <-time.After(5 * time.Second):
					return // the client never saw the line: the test fails below
				case <-r.Context().Done():
					return
				}
			}
		}
	}))
	defer up.Close()
	proxy := startProxy(t, up)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, proxy+"/api/chat", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	c := &NDJSONCounter{}
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			c.Line([]byte(strings.TrimSpace(line)))
			received <- struct{}{}
		}
		if err != nil {
			break
		}
	}
	if c.Events() != lines || !c.Complete() {
		t.Errorf("got %d lines, complete %v; want %d lines through a flushing proxy", c.Events(), c.Complete(), lines)
	}
}

func TestBaselineProxyUpstreamDown(t *testing.T) {
	up := httptest.NewServer(http.NotFoundHandler())
	proxy := startProxy(t, up)
	up.Close()
	resp, err := http.Get(proxy + "/api/version")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
}
