package ui

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/testwait"
)

// Credentials the fake admin API knows.
const (
	adminToken   = "the-management-token"
	adminKey     = "sk-sovra-0123456789abcdef0123456789abcdef0123456789abcdef"
	inferenceKey = "sk-sovra-fedcba9876543210fedcba9876543210fedcba9876543210"
)

// fakeAdmin is a stand-in for the node's admin API: it answers the
// routes the dashboard calls with fixed data (which a test may make
// hostile), checks credentials as the real one does, and records the
// status changes asked of it.
type fakeAdmin struct {
	mu      sync.Mutex
	data    fakeData
	revoked map[string]bool
	actions []string // "cordon n1 reason"
	sources []string // the remote address of each call
}

type fakeData struct {
	status client.ClusterStatus
	nodes  []client.Node
	deps   []client.Deployment
	keys   []client.Key
	audit  []client.AuditEntry
	usage  []client.UsageRow
}

func newFakeAdmin() *fakeAdmin {
	return &fakeAdmin{revoked: map[string]bool{}, data: fakeData{
		status: client.ClusterStatus{Self: "n1", Leader: "n1", Term: 2, AppliedIndex: 40, Members: []client.Member{
			{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2", Voter: true, Status: "ready"},
			{ID: "n2", HTTPAddr: "127.0.0.1:3", RaftAddr: "127.0.0.1:4", Voter: true, Status: "down"},
		}},
		nodes: []client.Node{
			{ID: "n1", Status: "ready", Labels: map[string]string{"zone": "a"}, GPUs: []client.GPU{{Index: 0, Model: "A100", MemoryBytes: 80 << 30}}, Models: []string{"llama3.2:1b"}},
			{ID: "n2", Status: "down", StatusReason: "no heartbeat", GPUs: []client.GPU{{Index: 0, Model: "A100", MemoryBytes: 80 << 30}}},
		},
		deps: []client.Deployment{{Name: "chat", Model: "llama3.2:1b", Replicas: 2, ReadyReplicas: 1, Status: "partial", Reason: "one replica cannot be placed",
			Placements: []client.Placement{{Node: "n1", State: "ready", Ready: true, Action: "keep"}}}},
		keys:  []client.Key{{ID: "key-1", Name: "team a", Role: "inference", Prefix: "sk-sovra-fedcba98", Created: 1}},
		audit: []client.AuditEntry{{Seq: 1, Time: 1, Actor: "admin", Action: "set-node-status", Target: "n1", Outcome: "ok", Hash: "abc"}},
		usage: []client.UsageRow{{Key: "key-1", Model: "llama3.2:1b", Requests: 3, PromptTokens: 30, CompletionTokens: 60}},
	}}
}

// handler is the fake's Fiber app, served in process.
func (f *fakeAdmin) app() *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	a := app.Group("/admin/v1", f.auth)
	a.Get("/cluster", func(c *fiber.Ctx) error { return c.JSON(f.read().status) })
	a.Get("/nodes", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"nodes": f.read().nodes}) })
	a.Get("/nodes/:id", func(c *fiber.Ctx) error {
		for _, n := range f.read().nodes {
			if n.ID == c.Params("id") {
				return c.JSON(client.NodeView{Node: n})
			}
		}
		return apiError(c, 404, "not_found", "no node "+c.Params("id"))
	})
	a.Post("/nodes/:id/:verb", f.nodeStatus)
	a.Get("/deployments", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"deployments": f.read().deps}) })
	a.Get("/deployments/:name", func(c *fiber.Ctx) error {
		for _, d := range f.read().deps {
			if d.Name == c.Params("name") {
				return c.JSON(d)
			}
		}
		return apiError(c, 404, "not_found", "no deployment "+c.Params("name"))
	})
	a.Get("/deployments/:name/explain", func(c *fiber.Ctx) error {
		return c.JSON(client.Explanation{Deployment: c.Params("name"), Status: "partial", Reason: "one replica cannot be placed",
			Nodes: []client.NodeExplanation{{Node: "n1", Verdict: "holds", GPUs: []client.GPUReservation{{Index: 0, Bytes: 4 << 30}}},
				{Node: "n2", Verdict: "rejected", Filter: "ready", Reason: "node is down"}}})
	})
	a.Get("/routing", func(c *fiber.Ctx) error {
		return c.JSON(client.RoutingView{Policy: "ttf", Replicas: []client.ReplicaView{{Deployment: "chat", Node: "n1", Health: "fresh", Slots: 4, TokensPerSec: 42}}})
	})
	a.Get("/keys", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"keys": f.read().keys}) })
	a.Get("/usage", func(c *fiber.Ctx) error { return c.JSON(client.UsageReport{Rows: f.read().usage}) })
	a.Get("/audit/verify", func(c *fiber.Ctx) error {
		return c.JSON(client.AuditVerification{OK: true, Entries: 1, Head: &client.AuditLink{Seq: 1, Hash: "abc"}})
	})
	a.Get("/audit", func(c *fiber.Ctx) error { return c.JSON(client.AuditPage{Entries: f.read().audit}) })
	return app
}

func (f *fakeAdmin) read() fakeData {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.data
}

func (f *fakeAdmin) edit(fn func(*fakeData)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.data)
}

// auth admits the admin credentials, refuses the inference key (403) and
// anything else (401), as the admin API does.
func (f *fakeAdmin) auth(c *fiber.Ctx) error {
	f.mu.Lock()
	f.sources = append(f.sources, c.Context().RemoteAddr().String())
	f.mu.Unlock()
	tok := strings.TrimPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
	switch {
	case (tok == adminToken || tok == adminKey) && !f.isRevoked(tok):
		return c.Next()
	case tok == inferenceKey:
		return apiError(c, 403, "insufficient_permissions", "This key may not use this route.")
	}
	return apiError(c, 401, "invalid_api_key", "Incorrect API key provided.")
}

func (f *fakeAdmin) isRevoked(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revoked[tok]
}

func (f *fakeAdmin) revoke(tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked[tok] = true
}

func (f *fakeAdmin) nodeStatus(c *fiber.Ctx) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if len(c.Body()) > 0 {
		if err := c.BodyParser(&body); err != nil {
			return apiError(c, 400, "invalid", "bad body")
		}
	}
	f.mu.Lock()
	f.actions = append(f.actions, strings.TrimSpace(c.Params("verb")+" "+c.Params("id")+" "+body.Reason))
	f.mu.Unlock()
	return c.JSON(client.Node{ID: c.Params("id"), Status: "cordoned"})
}

// callers are the remote addresses of the calls made so far.
func (f *fakeAdmin) callers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sources...)
}

func (f *fakeAdmin) done() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.actions...)
}

func apiError(c *fiber.Ctx, status int, code, msg string) error {
	return c.Status(status).JSON(fiber.Map{"error": fiber.Map{"message": msg, "type": "invalid_request_error", "param": nil, "code": code}})
}

// rig is a dashboard over a fake admin API, served by a test server.
type rig struct {
	t     *testing.T
	fake  *fakeAdmin
	ui    *UI
	clock *testwait.Clock
	url   string
	index atomic.Uint64
}

func newRig(t *testing.T, edit ...func(*Config)) *rig {
	t.Helper()
	r := &rig{t: t, fake: newFakeAdmin(), clock: testwait.NewClock()}
	r.index.Store(40)
	cfg := Config{Admin: r.fake.app().Handler(), Changed: func() <-chan struct{} { return make(chan struct{}) },
		Index: r.index.Load, Now: r.clock.Now}
	for _, e := range edit {
		e(&cfg)
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.ui = u
	web := fiber.New(fiber.Config{DisableStartupMessage: true, StreamRequestBody: true})
	u.Mount(web)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.url = "http://" + ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- web.Listener(ln) }()
	t.Cleanup(func() {
		u.Close()
		if err := web.Shutdown(); err != nil {
			t.Error(err)
		}
		<-served
	})
	return r
}

// browser is an HTTP client that keeps cookies and does not follow
// redirects, posting forms the way a browser on the dashboard does.
type browser struct {
	r       *rig
	cookies map[string]*http.Cookie
	origin  string
}

func (r *rig) browser() *browser {
	return &browser{r: r, cookies: map[string]*http.Cookie{}, origin: r.url}
}

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	b.r.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.r.url+path, body)
	if err != nil {
		b.r.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", b.origin)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		b.r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.r.t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return resp, string(data)
}

func (b *browser) get(path string) (*http.Response, string) {
	return b.do(http.MethodGet, path, nil, nil)
}

// signin signs in with cred and returns the answer.
func (b *browser) signin(cred string) (*http.Response, string) {
	b.r.t.Helper()
	_, page := b.get("/ui/signin")
	return b.do(http.MethodPost, "/ui/signin", url.Values{"csrf": {formValue(b.r.t, page, "csrf")}, "credential": {cred}, "next": {"/ui/"}}, nil)
}

// csrf is the session's CSRF token, as the pages show it.
func (b *browser) csrf() string {
	b.r.t.Helper()
	_, page := b.get("/ui/nodes")
	return formValue(b.r.t, page, "csrf")
}

// formValue finds the value of the hidden input called name in a page.
func formValue(t *testing.T, page, name string) string {
	t.Helper()
	marker := `name="` + name + `" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		t.Fatalf("no input %s in page:\n%s", name, page)
	}
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}
