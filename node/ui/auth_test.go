package ui

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// Every page and the live stream need a session: a browser without one
// is sent to sign in (pages) or refused (the rest), and nothing is read
// or changed on its behalf.
func TestPagesNeedASession(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	for _, path := range []string{"/ui/", "/ui", "/ui/nodes", "/ui/nodes/n1", "/ui/nodes/n1/cordon", "/ui/deployments/chat",
		"/ui/keys?range=7d", "/ui/audit", "/ui/no-such-page"} {
		resp, _ := b.get(path)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/signin") {
			t.Errorf("GET %s without a session: %d to %q, want 303 to the sign-in page", path, resp.StatusCode, loc)
		}
	}
	if resp, _ := b.get("/ui/events"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("events without a session: %d", resp.StatusCode)
	}
	for _, path := range []string{"/ui/nodes/n1/cordon", "/ui/signout"} {
		if resp, _ := b.do(http.MethodPost, path, url.Values{"csrf": {"x"}}, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %d", path, resp.StatusCode)
		}
	}
	if got := r.fake.done(); len(got) != 0 {
		t.Fatalf("the admin API was asked %v without a session", got)
	}
	if resp, body := b.get("/ui/signin"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="credential"`) {
		t.Fatalf("sign-in page: %d", resp.StatusCode)
	}
	if resp, _ := b.get(r.ui.assets.URL["app.js"]); resp.StatusCode != http.StatusOK ||
		!strings.Contains(resp.Header.Get("Content-Type"), "javascript") || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("script: %d %v", resp.StatusCode, resp.Header)
	}
}

// Sign-in admits the management token and admin keys, and refuses other
// credentials with the admin API's own verdict, without a session.
func TestSignin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cred   string
		status int
		says   string
	}{
		{"management token", adminToken, http.StatusSeeOther, ""},
		{"admin key", adminKey, http.StatusSeeOther, ""},
		{"inference key", inferenceKey, http.StatusForbidden, "may not administer"},
		{"wrong", "sk-sovra-guess", http.StatusUnauthorized, "not a valid credential"},
		{"empty", "  ", http.StatusBadRequest, "Enter the management token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			b := r.browser()
			resp, body := b.signin(tc.cred)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("sign-in: %d, want %d saying %q:\n%s", resp.StatusCode, tc.status, tc.says, body)
			}
			if strings.Contains(body, tc.cred) && strings.TrimSpace(tc.cred) != "" {
				t.Fatal("the answer repeats the credential")
			}
			_, signedIn := b.cookies[sessionCookie]
			if signedIn != (tc.status == http.StatusSeeOther) {
				t.Fatalf("session cookie set: %v", signedIn)
			}
			if !signedIn {
				if resp, _ := b.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("overview after a refused sign-in: %d", resp.StatusCode)
				}
				return
			}
			c := b.cookies[sessionCookie]
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui" || c.Secure || strings.Contains(c.Value, tc.cred) {
				t.Fatalf("session cookie %+v", c)
			}
			if loc := resp.Header.Get("Location"); loc != "/ui/" {
				t.Fatalf("sent to %q", loc)
			}
			if resp, body := b.get("/ui/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Overview") || strings.Contains(body, tc.cred) {
				t.Fatalf("overview: %d", resp.StatusCode)
			}
		})
	}
}

// The session cookie is Secure on a node that serves TLS.
func TestSecureCookie(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Secure = true })
	b := r.browser()
	b.origin = "https://" + strings.TrimPrefix(r.url, "http://")
	if resp, body := b.signin(adminToken); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	if c := b.cookies[sessionCookie]; c == nil || !c.Secure {
		t.Fatalf("session cookie %+v", c)
	}
}

// A sign-in form must come from the dashboard: its token must match the
// sign-in cookie, and its origin the dashboard's.
func TestSigninRefusesForeignForms(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		tok  string
	}{
		{"no form token", nil, ""},
		{"wrong form token", nil, "forged"},
		{"other origin", map[string]string{"Origin": "http://evil.example"}, "page"},
		{"other site", map[string]string{"Sec-Fetch-Site": "cross-site"}, "page"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := r.browser()
			_, page := b.get("/ui/signin")
			tok := tc.tok
			if tok == "page" {
				tok = formValue(t, page, "csrf")
			}
			resp, _ := b.do(http.MethodPost, "/ui/signin", url.Values{"csrf": {tok}, "credential": {adminToken}}, tc.hdr)
			if resp.StatusCode != http.StatusForbidden || b.cookies[sessionCookie] != nil {
				t.Fatalf("foreign sign-in: %d, cookies %v", resp.StatusCode, b.cookies)
			}
		})
	}
}

// Failed sign-ins are limited per client: past the limit even the right
// credential is refused, until the window has passed.
func TestSigninRateLimit(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	for i := range failsPerClient {
		if resp, _ := b.signin("wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, resp.StatusCode)
		}
	}
	resp, body := b.signin(adminToken)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || b.cookies[sessionCookie] != nil {
		t.Fatalf("sign-in past the limit: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
	r.clock.Advance(failWindow)
	if resp, _ := b.signin(adminToken); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in after the window: %d", resp.StatusCode)
	}
}

// State changes need the session's CSRF token and the dashboard's origin;
// a change that passes is made through the admin API.
func TestCSRF(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	b.signin(adminToken)
	tok := b.csrf()
	other := r.browser()
	other.signin(adminKey)
	for _, tc := range []struct {
		name string
		tok  string
		hdr  map[string]string
	}{
		{"no token", "", nil},
		{"wrong token", "forged", nil},
		{"another session's token", other.csrf(), nil},
		{"other origin", tok, map[string]string{"Origin": "http://evil.example"}},
		{"null origin", tok, map[string]string{"Origin": "null"}},
		{"other site", tok, map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"wrong content type", tok, map[string]string{"Content-Type": "text/plain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := b.do(http.MethodPost, "/ui/nodes/n1/cordon", url.Values{"csrf": {tc.tok}, "reason": {"x"}}, tc.hdr)
			if resp.StatusCode < 400 {
				t.Fatalf("forged cordon: %d", resp.StatusCode)
			}
		})
	}
	if got := r.fake.done(); len(got) != 0 {
		t.Fatalf("forged requests reached the admin API: %v", got)
	}
	resp, _ := b.do(http.MethodPost, "/ui/nodes/n1/cordon", url.Values{"csrf": {tok}, "reason": {"disk swap"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/nodes/n1?done=cordon" {
		t.Fatalf("cordon: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := r.fake.done(); !slices.Equal(got, []string{"cordon n1 disk swap"}) {
		t.Fatalf("admin API asked %v", got)
	}
	// The admin call carries the browser's address, for the audit log.
	for _, s := range r.fake.callers() {
		if !strings.HasPrefix(s, "127.0.0.1:") {
			t.Fatalf("admin call from %q", s)
		}
	}
}

// A GET never changes anything: the confirmation page asks first.
func TestConfirmationStep(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	b.signin(adminToken)
	resp, body := b.get("/ui/nodes/n1/drain")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Drain node n1?") || !strings.Contains(body, `id="confirm"`) {
		t.Fatalf("confirmation: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := b.get("/ui/nodes/n1/explode"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown action: %d", resp.StatusCode)
	}
	if got := r.fake.done(); len(got) != 0 {
		t.Fatalf("a GET changed %v", got)
	}
}

// Signing out ends the session on the node; its cookie is then worthless.
func TestSignout(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	b.signin(adminToken)
	id := b.cookies[sessionCookie].Value
	resp, _ := b.do(http.MethodPost, "/ui/signout", url.Values{"csrf": {b.csrf()}}, nil)
	if resp.StatusCode != http.StatusSeeOther || r.ui.sessions.len() != 0 {
		t.Fatalf("sign-out: %d, %d sessions", resp.StatusCode, r.ui.sessions.len())
	}
	b.cookies[sessionCookie] = &http.Cookie{Name: sessionCookie, Value: id}
	if resp, _ := b.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("overview with the old cookie: %d", resp.StatusCode)
	}
}

// A key revoked while signed in ends the session at its next page.
func TestRevokedKeyEndsTheSession(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	if resp, _ := b.signin(adminKey); resp.StatusCode != http.StatusSeeOther {
		t.Fatal("sign-in failed")
	}
	r.fake.revoke(adminKey)
	resp, _ := b.get("/ui/nodes")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/signin") || r.ui.sessions.len() != 0 {
		t.Fatalf("page after revocation: %d to %q, %d sessions", resp.StatusCode, resp.Header.Get("Location"), r.ui.sessions.len())
	}
}

// Sessions end after their idle timeout.
func TestIdleSessionEnds(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	b.signin(adminToken)
	r.clock.Advance(DefaultIdleTimeout)
	if resp, _ := b.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("page after the idle timeout: %d", resp.StatusCode)
	}
}

// Every dashboard answer forbids framing, inline scripts and caching.
func TestSecurityHeaders(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	b.signin(adminToken)
	for _, path := range []string{"/ui/signin", "/ui/", "/ui/audit"} {
		resp, _ := b.get(path)
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") || resp.Header.Get("X-Frame-Options") != "DENY" ||
			resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, resp.Header)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/nodes?x=1":           "/ui/nodes?x=1",
		"/ui":                     "/ui",
		"":                        "/ui/",
		"https://evil.example/":   "/ui/",
		"//evil.example/ui/":      "/ui/",
		"/\\evil.example":         "/ui/",
		"/uix":                    "/ui/",
		"/ui/signin?next=/ui/":    "/ui/",
		"/ui/events":              "/ui/",
		"javascript:alert(1)":     "/ui/",
		"/ui/nodes\r\nSet-Cookie": "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// sessionStore: expiry, eviction and removal.
func TestSessionStore(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSessionStore(time.Hour, 10*time.Minute, 2, func() time.Time { return now })
	a, sa, err := s.create("cred-a", "a")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.get(a); !ok || got != sa || got.csrf == "" || len(a) < 40 {
		t.Fatal("new session not found")
	}
	if _, ok := s.get(a + "x"); ok {
		t.Fatal("a wrong id found a session")
	}
	for range 5 {
		now = now.Add(9 * time.Minute)
		if _, ok := s.get(a); !ok {
			t.Fatal("a used session expired before its idle timeout")
		}
	}
	now = now.Add(20 * time.Minute) // 65 min after creation
	if _, ok := s.get(a); ok {
		t.Fatal("a session outlived its TTL")
	}
	b, _, _ := s.create("cred-b", "b")
	now = now.Add(time.Minute)
	c, _, _ := s.create("cred-c", "c")
	now = now.Add(time.Minute)
	s.get(b)
	d, _, _ := s.create("cred-d", "d") // evicts c, the least recently used
	if _, ok := s.get(c); ok || s.len() != 2 {
		t.Fatalf("eviction: c kept, %d sessions", s.len())
	}
	s.remove(d)
	if _, ok := s.get(d); ok {
		t.Fatal("removed session found")
	}
	if _, ok := s.get(b); !ok {
		t.Fatal("session b lost")
	}
	if tokenEqual("", "") || !tokenEqual("x", "x") || tokenEqual("x", "y") {
		t.Fatal("tokenEqual")
	}
}

func TestFailLimiter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newFailLimiter(func() time.Time { return now })
	for range failsPerClient {
		if l.wait("2001:db8::1") != 0 {
			t.Fatal("limited too early")
		}
		l.fail("2001:db8::1")
		now = now.Add(time.Second)
	}
	if w := l.wait("2001:db8::2"); w <= 0 || w > failWindow {
		t.Fatalf("same /64: wait %v", w)
	}
	if w := l.wait("2001:db8:0:1::1"); w != 0 {
		t.Fatalf("other /64: wait %v", w)
	}
	now = now.Add(failWindow)
	if w := l.wait("2001:db8::1"); w != 0 {
		t.Fatalf("after the window: wait %v", w)
	}
	for i := range failsPerNode {
		l.fail("10.0.0." + string(rune('0'+i%10)))
	}
	if l.wait("192.0.2.1") == 0 {
		t.Fatal("node-wide limit not applied")
	}
}
