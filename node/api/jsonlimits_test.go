package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// FuzzCheckJSON: the limit checker refuses with a 400, and a valid
// document it accepts is within every limit as the standard decoder
// reads it (depth, values, items of messages and input, model length).
func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{`{"model":"m","messages":[{"role":"user"}]}`, `[[[`, `"\`, `{"a":"\"x\\"}`, `}]`, ``, `{"input":[1,2,3]}`,
		`{"messages":[1,2],"input":[[1,2,3]],"x":{"messages":[1,2,3]}}`, `{"model":"\u0041\"` + strings.Repeat("m", 300) + `"}`,
		`{"a" : "b", "c":[true,false,null,1e5,-0.5]}`,
		`{"messages":["0123456789abcdef\"],[1,2,3,4,5,6,7,8],\"0123456789","x","y","z"]}`,
		`{"model":"0123456789abcdef\\","messages":["a","b","c"]}`} {
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
			values, lists := countValues(doc)
			if values > lim.values {
				t.Fatalf("accepted %q holding %d values", doc, values)
			}
			for key, n := range lists {
				if n > lim.messages {
					t.Fatalf("accepted %q whose %s holds %d items", doc, key, n)
				}
			}
			// Request types decode keys as encoding/json matches them
			// to struct fields: whatever their case or escapes.
			var top map[string]any
			if json.Unmarshal([]byte(doc), &top) == nil {
				for k, v := range top {
					if m, ok := v.(string); ok && strings.EqualFold(k, "model") && len(m) > MaxModelName {
						t.Fatalf("accepted %q, a model name of %d bytes", doc, len(m))
					}
				}
			}
		}
	})
}

// countValues counts the values of a valid JSON document (object keys
// are not values) and the items of its top-level object's messages and
// input arrays (by any key that encoding/json matches to those names).
func countValues(doc string) (int, map[string]int) {
	dec := json.NewDecoder(strings.NewReader(doc))
	var stack []json.Delim
	isKey := false // the next string is an object key
	var key string // the last key of the top-level object
	values, lists := 0, map[string]int{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return values, lists
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			isKey = len(stack) > 0 && stack[len(stack)-1] == '{'
			continue
		}
		if s, ok := tok.(string); ok && isKey {
			if len(stack) == 1 {
				key = s
			}
			isKey = false
			continue
		}
		values++
		if len(stack) == 2 && stack[0] == '{' && stack[1] == '[' && (strings.EqualFold(key, "messages") || strings.EqualFold(key, "input")) {
			lists[key]++
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, d)
			isKey = d == '{'
			continue
		}
		isKey = len(stack) > 0 && stack[len(stack)-1] == '{'
	}
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
