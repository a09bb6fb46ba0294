package ollamasim

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestGarbleAndBadMetaFaults(t *testing.T) {
	s := StartTest(t, Config{ResponseTokens: 8})
	post := func() string {
		resp, err := http.Post(s.URL()+"/api/chat", "application/json",
			strings.NewReader(`{"model":"llama3.2:1b","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	s.SetGarbleAfter(2)
	lines := strings.Split(strings.TrimSpace(post()), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[2], `"content":`) || strings.Contains(lines[2], `"done":true`) {
		t.Fatalf("garbled stream: %q", lines)
	}
	s.SetGarbleAfter(-1)
	if out := post(); !strings.Contains(out, `"done":true`) {
		t.Fatalf("stream after clearing: %q", out)
	}
	s.SetBadMeta(true)
	for _, path := range []string{"/api/tags", "/api/ps"} {
		resp, err := http.Get(s.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "not json") {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, b)
		}
	}
}
