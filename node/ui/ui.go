// Package ui is the web dashboard every node serves at /ui: an overview
// of the cluster, a page per deployment and per node (with cordon, drain
// and uncordon behind a confirmation step), keys and usage with a chart,
// and the audit log with its hash chain verified.
//
// Pages are rendered on the server with html/template; the templates, a
// stylesheet and one small script are embedded in the binary (nothing is
// loaded from elsewhere, so the dashboard works air-gapped). An operator
// signs in with an admin credential (the management token or an admin
// key) through a form; the node keeps the session in memory and gives
// the browser a random id in an HttpOnly, SameSite=Strict cookie. Every
// state-changing request carries the session's CSRF token and must come
// from the dashboard's own origin. Live updates come as server-sent
// events, one at each change of the replicated state and one at every
// refresh interval, on which the script fetches the page again and
// swaps the parts that changed.
//
// The data comes from the node's own admin API, called in process with
// the session's credential (bridge): the dashboard shows what /admin/v1
// shows and obeys its rules, and its changes are audited like any admin
// call.
package ui

import (
	"errors"
	"html/template"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Path is where the dashboard is mounted.
const Path = "/ui"

// Config is what the dashboard needs from its node.
type Config struct {
	// Admin serves the node's admin API in process (api.Server.InProcess).
	Admin fasthttp.RequestHandler
	// Changed returns a channel closed at the next change of the
	// replicated state; Index is the index of the state's last change.
	Changed func() <-chan struct{}
	Index   func() uint64
	// Secure marks the session cookie Secure and expects https origins:
	// set it when the API serves TLS to its clients.
	Secure bool
	// SessionTTL bounds a session's life, IdleTimeout the time between
	// its requests; MaxSessions the sessions kept (the least recently
	// used goes first). Zero: the defaults.
	SessionTTL  time.Duration
	IdleTimeout time.Duration
	MaxSessions int
	// Refresh is how often live pages are told to refresh without a state
	// change, for figures outside the state (load, tokens per second).
	Refresh time.Duration
	// StreamLife bounds one live-update stream; the browser then opens
	// another, which checks the session again.
	StreamLife time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	Log *zap.Logger
}

// Defaults of the live updates.
const (
	DefaultRefresh    = 5 * time.Second
	DefaultStreamLife = 10 * time.Minute
	// maxStreamsPerSession and maxStreams bound the open live-update
	// streams.
	maxStreamsPerSession = 8
	maxStreams           = 256
)

func (c Config) withDefaults() Config {
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.Refresh <= 0 {
		c.Refresh = DefaultRefresh
	}
	if c.StreamLife <= 0 {
		c.StreamLife = DefaultStreamLife
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	return c
}

// UI is the dashboard of one node.
type UI struct {
	cfg      Config
	bridge   bridge
	sessions *sessionStore
	fails    *failLimiter
	pages    map[string]*template.Template
	assets   assets

	mu      sync.Mutex
	streams int
	done    chan struct{}
	closed  bool
}

// New builds the dashboard.
func New(cfg Config) (*UI, error) {
	cfg = cfg.withDefaults()
	if cfg.Admin == nil || cfg.Changed == nil || cfg.Index == nil {
		return nil, errors.New("ui: Admin, Changed and Index are required")
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	as, err := loadAssets()
	if err != nil {
		return nil, err
	}
	return &UI{cfg: cfg, bridge: bridge{h: cfg.Admin}, pages: pages, assets: as, done: make(chan struct{}),
		sessions: newSessionStore(cfg.SessionTTL, cfg.IdleTimeout, cfg.MaxSessions, cfg.Now),
		fails:    newFailLimiter(cfg.Now)}, nil
}

// Mount adds the dashboard's routes to r under Path. Only the sign-in
// page and the static files are served without a session.
func (u *UI) Mount(r fiber.Router) {
	g := r.Group(Path, u.headers)
	g.Get("/static/:file", u.static)
	g.Get("/signin", u.signinPage)
	g.Post("/signin", u.sameOrigin, u.signin)
	g.Post("/signout", u.sameOrigin, u.withSession(u.csrf(u.signout)))
	g.Get("/events", u.withSession(u.events))
	g.Get("/", u.page(u.overview))
	g.Get("/deployments/:name", u.page(u.deployment))
	g.Get("/nodes", u.page(u.nodes))
	g.Get("/nodes/:id", u.page(u.node))
	g.Get("/nodes/:id/:action", u.page(u.confirmAction))
	g.Post("/nodes/:id/:action", u.sameOrigin, u.withSession(u.csrf(u.nodeAction)))
	g.Get("/keys", u.page(u.keys))
	g.Get("/audit", u.page(u.audit))
	g.All("/*", u.notFound)
}

// Close ends the live-update streams (before the server's graceful stop,
// which would otherwise wait for them).
func (u *UI) Close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.closed = true
		close(u.done)
	}
}

// headers sets what every dashboard response carries: a strict content
// security policy (the embedded script and stylesheet only, no inline
// code), no framing, no sniffing, a referrer for its own pages only (with
// "no-referrer", browsers send "Origin: null" with its forms), and no
// caching unless a handler says otherwise.
func (u *UI) headers(c *fiber.Ctx) error {
	h := &c.Response().Header
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	h.Set(fiber.HeaderCacheControl, "no-store")
	if u.cfg.Secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	return c.Next()
}

// sameOrigin refuses a state-changing request that a browser made for a
// page of another origin: its Sec-Fetch-Site must be same-origin and its
// Origin (which browsers send with every POST) this dashboard's.
func (u *UI) sameOrigin(c *fiber.Ctx) error {
	if site := c.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return u.forbidden(c, "This request came from another site.")
	}
	if o := c.Get(fiber.HeaderOrigin); o != "" && !strings.EqualFold(o, u.selfOrigin(c)) {
		return u.forbidden(c, "This request came from another origin.")
	}
	return c.Next()
}

// selfOrigin is the dashboard's origin as the browser names it.
func (u *UI) selfOrigin(c *fiber.Ctx) string {
	scheme := "http"
	if u.cfg.Secure || c.Context().IsTLS() {
		scheme = "https"
	}
	return scheme + "://" + string(c.Request().Host())
}

// forbidden answers 403 with a short page.
func (u *UI) forbidden(c *fiber.Ctx, msg string) error {
	return u.render(c.Status(fiber.StatusForbidden), "error", errorPage{Title: "Forbidden", Message: msg})
}

// notFound answers 404 with a short page (or the sign-in page's redirect
// for a browser without a session, so that URLs do not tell what exists).
func (u *UI) notFound(c *fiber.Ctx) error {
	if _, _, ok := u.session(c); !ok {
		return u.toSignin(c)
	}
	return u.render(c.Status(fiber.StatusNotFound), "error", errorPage{Title: "Not found", Message: "There is no such page."})
}
