package api

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sovra/sovra/internal/testauth"
)

// TestOriginCheck: a browser page may call the API only from a loopback
// origin or one the operator allowed; preflights of allowed origins are
// answered with CORS headers, before any credential.
func TestOriginCheck(t *testing.T) {
	do := testApp(t, func(c *Config) { c.AllowedOrigins = []string{"https://*.example.com", "http://ui.internal:3000"} })
	cases := []struct {
		name, origin string
		want         int
	}{
		{"no origin", "", 200},
		{"another site", "https://evil.example.org", 403},
		{"a look-alike of an allowed one", "https://example.com.evil.org", 403},
		{"null origin", "null", 403},
		{"loopback", "http://localhost:5173", 200},
		{"loopback address", "http://127.0.0.1:8000", 200},
		{"loopback v6", "http://[::1]:8000", 200},
		{"allowed by a wildcard", "https://ui.example.com", 200},
		{"allowed exactly", "http://ui.internal:3000", 200},
		{"allowed host on another port", "http://ui.internal:3001", 403},
		{"file scheme", "file://localhost", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/chat/completions", "/api/chat"} {
				req := httptest.NewRequest("POST", path, strings.NewReader(chatJSON))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+testauth.Token)
				if tc.origin != "" {
					req.Header.Set("Origin", tc.origin)
				}
				st, h, body := do(req)
				if st != tc.want {
					t.Fatalf("%s: status %d, want %d: %s", path, st, tc.want, body)
				}
				if st == 200 && tc.origin != "" && h.Get("Access-Control-Allow-Origin") != tc.origin {
					t.Errorf("Access-Control-Allow-Origin %q", h.Get("Access-Control-Allow-Origin"))
				}
				if st == 403 && !strings.Contains(body, "origin_not_allowed") && !strings.Contains(body, "origin") {
					t.Errorf("refusal %s", body)
				}
			}
		})
	}
	t.Run("preflight of an allowed origin", func(t *testing.T) {
		req := httptest.NewRequest("OPTIONS", "/v1/chat/completions", nil)
		req.Header.Set("Origin", "https://ui.example.com")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		st, h, body := do(req)
		if st != 204 || h.Get("Access-Control-Allow-Origin") != "https://ui.example.com" ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "authorization") {
			t.Fatalf("%d %v %s", st, h, body)
		}
	})
	t.Run("preflight of another site", func(t *testing.T) {
		req := httptest.NewRequest("OPTIONS", "/v1/chat/completions", nil)
		req.Header.Set("Origin", "https://evil.example.org")
		req.Header.Set("Access-Control-Request-Method", "POST")
		if st, h, _ := do(req); st != 403 || h.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("%d %v", st, h)
		}
	})
}

// TestLoopbackHostCheck: a node that listens on loopback answers only
// requests for a loopback host, so a page whose DNS name was rebound to
// 127.0.0.1 cannot reach it; a node on other addresses takes any Host.
func TestLoopbackHostCheck(t *testing.T) {
	cases := []struct {
		host     string
		loopback bool
		want     int
	}{
		{"localhost:8080", true, 200},
		{"LOCALHOST", true, 200},
		{"app.localhost:8080", true, 200},
		{"127.0.0.1:8080", true, 200},
		{"127.0.0.2", true, 200},
		{"[::1]:8080", true, 200},
		{"evil.example:8080", true, 403},
		{"localhost.evil.example", true, 403},
		{"10.0.0.1:8080", true, 403},
		{"evil.example:8080", false, 200},
	}
	for _, tc := range cases {
		do := testApp(t, func(c *Config) { c.LoopbackOnly = tc.loopback })
		for _, path := range []string{"/v1/models", "/healthz"} {
			req := httptest.NewRequest("GET", path, nil)
			req.Host = tc.host
			req.Header.Set("Authorization", "Bearer "+testauth.Token)
			if st, _, body := do(req); st != tc.want {
				t.Errorf("Host %s (loopback listener %v) on %s: %d, want %d: %s", tc.host, tc.loopback, path, st, tc.want, body)
			}
		}
	}
}

func TestOriginMatches(t *testing.T) {
	cases := []struct {
		pattern, origin string
		want            bool
	}{
		{"*", "https://anything.example", true},
		{"https://ui.example.com", "https://ui.example.com", true},
		{"https://ui.example.com/", "https://ui.example.com", true},
		{"https://ui.example.com", "http://ui.example.com", false},
		{"https://*.example.com", "https://a.b.example.com", true},
		{"https://*.example.com", "https://example.com", false},
		{"http://localhost:*", "http://localhost:3000", true},
	}
	for _, tc := range cases {
		if got := originMatches(tc.pattern, tc.origin); got != tc.want {
			t.Errorf("%s ~ %s: %v", tc.pattern, tc.origin, got)
		}
	}
}
