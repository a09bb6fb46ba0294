package synchttp

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestWriteRequestAsNetHTTPDoes: a server reads what writeRequest writes
// as what net/http's Request.Write writes, whichever path it takes.
func TestWriteRequestAsNetHTTPDoes(t *testing.T) {
	mk := func(method, rawURL, body string, edit func(*http.Request)) func() *http.Request {
		return func() *http.Request {
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req, err := http.NewRequest(method, rawURL, rd)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", "sovra/test")
			if edit != nil {
				edit(req)
			}
			return req
		}
	}
	for _, tc := range []struct {
		name  string
		req   func() *http.Request
		plain bool
	}{
		{"post", mk("POST", "http://127.0.0.1:11434/api/chat", `{"model":"m"}`, nil), true},
		{"post empty", mk("POST", "http://h/api/x", "", nil), true},
		{"get with query", mk("GET", "http://h/api/tags?x=1&y=%20", "", nil), true},
		{"delete", mk("DELETE", "http://h/api/delete", "", nil), true},
		{"no user agent", mk("POST", "http://h/a", "b", func(r *http.Request) { r.Header.Del("User-Agent") }), true},
		{"several values", mk("POST", "http://h/a", "b", func(r *http.Request) { r.Header.Add("Accept", "a"); r.Header.Add("Accept", "b") }), true},
		{"host set", mk("POST", "http://h/a", "b", func(r *http.Request) { r.Host = "other:1" }), true},
		{"close", mk("POST", "http://h/a", "b", func(r *http.Request) { r.Close = true }), false},
		{"unknown length", mk("POST", "http://h/a", "b", func(r *http.Request) { r.ContentLength = -1 }), false},
		{"value with spaces", mk("POST", "http://h/a", "b", func(r *http.Request) { r.Header["X-A"] = []string{" x "} }), false},
		{"value with a newline", mk("POST", "http://h/a", "b", func(r *http.Request) { r.Header["X-A"] = []string{"x\r\nX-B: y"} }), false},
		{"non-canonical key", mk("POST", "http://h/a", "b", func(r *http.Request) { r.Header["x-a"] = []string{"x"} }), false},
		{"host header", mk("POST", "http://h/a", "b", func(r *http.Request) { r.Header["Host"] = []string{"x"} }), false},
		{"user info", mk("POST", "http://u:p@h/a", "b", nil), false},
		{"zone", mk("GET", "http://[fe80::1%25eth0]:80/a", "", nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := plainRequest(tc.req()); got != tc.plain {
				t.Fatalf("plain %v, want %v", got, tc.plain)
			}
			want, werr := read(t, tc.req(), func(r *http.Request, bw *bufio.Writer) error { return r.Write(bw) })
			got, gerr := read(t, tc.req(), func(r *http.Request, bw *bufio.Writer) error { return writeRequest(bw, r) })
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("net/http: %v, writeRequest: %v", werr, gerr)
			}
			if werr != nil {
				return
			}
			for _, f := range []struct {
				name      string
				got, want any
			}{
				{"method", got.Method, want.Method}, {"uri", got.RequestURI, want.RequestURI}, {"host", got.Host, want.Host},
				{"header", got.Header, want.Header}, {"length", got.ContentLength, want.ContentLength}, {"body", got.body, want.body},
			} {
				if !reflect.DeepEqual(f.got, f.want) {
					t.Errorf("%s: %q, net/http's %q", f.name, f.got, f.want)
				}
			}
		})
	}
}

// TestWriteRequestChecksTheBodyLength: a body shorter or longer than its
// stated length fails, as with net/http.
func TestWriteRequestChecksTheBodyLength(t *testing.T) {
	for _, n := range []int64{3, 5} {
		req := &http.Request{Method: "POST", URL: &url.URL{Scheme: "http", Host: "h", Path: "/a"}, Header: http.Header{},
			Body: io.NopCloser(strings.NewReader("four")), ContentLength: n}
		if !plainRequest(req) {
			t.Fatal("not plain")
		}
		if err := writeRequest(bufio.NewWriter(io.Discard), req); err == nil {
			t.Errorf("a 4-byte body sent as %d bytes: no error", n)
		}
	}
}

type readRequest struct {
	*http.Request
	body string
}

func read(t *testing.T, req *http.Request, write func(*http.Request, *bufio.Writer) error) (readRequest, error) {
	t.Helper()
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	if err := write(req, bw); err != nil {
		return readRequest{}, err
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	b, err := io.ReadAll(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	return readRequest{got, string(b)}, nil
}
