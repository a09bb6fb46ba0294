package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{`{"model":"m","messages":[{"role":"user"}]}`, `[[[`, `"\`, `{"a":"\"x\\"}`, `}]`, ``, `{"input":[1,2,3]}`} {
		f.Add(seed)
	}
	lim := jsonLimits{depth: 4, values: 64, messages: 2}
	f.Fuzz(func(t *testing.T, doc string) {
		err := checkJSON([]byte(doc), lim)
		var ae *Error
		if err != nil && (!errors.As(error(err), &ae) || ae.Status != 400) {
			t.Fatalf("refusal %v is not a 400", err)
		}
		if err == nil && json.Valid([]byte(doc)) {
			if depth := depthOf(doc); depth > lim.depth {
				t.Fatalf("accepted %q nested %d deep", doc, depth)
			}
		}
	})
}

// depthOf is the nesting depth of a valid JSON document, as the
// standard decoder reads it.
func depthOf(doc string) int {
	dec := json.NewDecoder(strings.NewReader(doc))
	depth, level := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return depth
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			level++
			depth = max(depth, level)
		case json.Delim('}'), json.Delim(']'):
			level--
		}
	}
}

func TestBodyLimitWhateverTheFraming(t *testing.T) {
	url, _ := startServer(t, &fakeBackend{chat: words("ok")}, func(c *Config) { c.BodyLimit = 1024 })
	big := chatOf("m", 100)
	cases := []struct {
		name    string
		chunked bool
		body    string
		status  int
	}{
		{name: "declared length over the limit", body: big, status: 413},
		{name: "chunked body over the limit", chunked: true, body: big, status: 413},
		{name: "chunked body within the limit", chunked: true, body: chatOf("m", 1), status: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, url+"/api/chat", struct{ *strings.Reader }{strings.NewReader(tc.body)})
			if !tc.chunked {
				req.ContentLength = int64(len(tc.body))
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}
