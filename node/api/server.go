// Package api is a node's HTTP surface, built on Fiber: the OpenAI-compatible
// /v1 routes, the Anthropic Messages route, the Ollama-native /api routes and
// health checks. Handlers decode, make one backend call and return errors;
// one error handler renders every failure in the format its route family
// expects. Translation between the OpenAI and Ollama wire formats is done by
// github.com/ollama/ollama/openai and .../anthropic; this package wraps them
// and fills their gaps.
package api

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/modelshare"
	"github.com/sovra/sovra/node/quota"
	nodeusage "github.com/sovra/sovra/node/usage"
)

// Config holds the HTTP settings of a node.
type Config struct {
	// Registry, when set, is where /metrics comes from (a node shares it
	// with its router); otherwise the server makes its own.
	Registry *prometheus.Registry
	// BodyLimit is the largest request body accepted, in bytes. Bodies
	// are read as they arrive and refused (413) once past it, whatever
	// length they declare.
	BodyLimit int
	// MaxHeaderBytes bounds the request line and headers together (431
	// past it).
	MaxHeaderBytes int
	// MaxConns bounds the connections open at once; MaxConnsPerIP those
	// from one client address (an IPv6 client's /64). Extra connections
	// are answered 503 or 429 and closed. Zero means no bound.
	MaxConns      int
	MaxConnsPerIP int
	// MaxMessages bounds the items of a request's messages or input
	// array; MaxJSONDepth the nesting of its JSON body; MaxJSONValues the
	// values (objects, arrays, strings, numbers, literals) in it.
	MaxMessages   int
	MaxJSONDepth  int
	MaxJSONValues int
	// ReadTimeout bounds reading one request.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write of a response, not the whole response,
	// so slow readers are cut but long generations are not.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections left unused this long.
	IdleTimeout time.Duration
	// ModelRegistry, when set, serves the local Ollama's models to peers
	// (modelshare.RoutePrefix, peer channel only).
	ModelRegistry *modelshare.Registry
	// Version is reported in health responses.
	Version string
	// AdminToken is the management token: as a bearer token it admits
	// operators to /admin/v1 and to the inference routes (/v1, /api; on
	// /v1/messages also as x-api-key). Empty admits no operator.
	AdminToken string
	// Keys, when set, holds further API keys (auth.StateKeys: those of
	// the replicated state).
	Keys auth.KeyStore
	// KeyHasher hashes the secrets of new keys (/admin/v1/keys); nil on
	// a node outside any cluster, whose key routes then answer 503.
	KeyHasher *auth.Hasher
	// AuditFlush is how often failed admin authentications are written
	// to the audit log (DefaultAuditFlush when zero).
	AuditFlush time.Duration
	// AllowedOrigins are the browser origins, beyond loopback ones, whose
	// pages may call the API: origins with at most one "*", or "*" alone.
	AllowedOrigins []string
	// OpenInference admits requests without a credential on /v1 and
	// /api (--auth=off, for a trusted network); /admin/v1 still needs
	// the management token or an admin key.
	OpenInference bool
	// LoopbackOnly says the API listens on loopback only: requests must
	// then name a loopback host (no DNS rebinding).
	LoopbackOnly bool
	// PeerID names the cluster node a TLS client certificate belongs to,
	// or fails: the internal peer routes admit only such callers. Nil
	// for a node outside any cluster: the routes answer 404.
	PeerID func(*tls.ConnectionState) (string, error)
	// Ready, when set, says whether the node is ready beyond its backend
	// (a cluster member is once it has joined and knows a leader): nil,
	// or why not. /readyz answers 503 with the reason until it is.
	Ready func() error
	// Quota, when set, enforces the API keys' limits cluster-wide on the
	// requests this node is the first to receive.
	Quota *quota.Limiter
	// Usage, when set, sums each inference request's usage for the
	// state (on the node the client reached).
	Usage *nodeusage.Recorder
	// DashboardPath, when set, is the path under which the web dashboard
	// (package ui) is mounted: it checks its requests' Origin itself
	// (its own origin only), so AllowedOrigins does not apply there.
	DashboardPath string
	// LoadFeed, when set, streams this node's load to peers that watch
	// it (GET /internal/v1/load?watch=1, peer channel only).
	LoadFeed LoadFeed
}

// DefaultConfig returns the settings sovra uses unless told otherwise.
func DefaultConfig() Config {
	return Config{
		BodyLimit:      DefaultBodyLimit,
		MaxHeaderBytes: DefaultMaxHeaderBytes,
		MaxConns:       DefaultMaxConns,
		MaxConnsPerIP:  DefaultMaxConnsPerIP,
		MaxMessages:    DefaultMaxMessages,
		MaxJSONDepth:   DefaultMaxJSONDepth,
		MaxJSONValues:  DefaultMaxJSONValues,
		ReadTimeout:    60 * time.Second,
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    120 * time.Second,
	}
}

// Default limits. A body of 8 MiB holds a chat of about two million
// tokens of text, past the context of any model served; 32 KiB of headers
// hold JWTs and the headers proxies add.
const (
	DefaultBodyLimit      = 8 << 20
	DefaultMaxHeaderBytes = 32 << 10
	DefaultMaxConns       = 10000
	DefaultMaxConnsPerIP  = 256
	DefaultMaxMessages    = 4096
	DefaultMaxJSONDepth   = 64
	DefaultMaxJSONValues  = 1 << 18
)

// withDefaults gives the limits left at zero their default; BodyLimit and
// the JSON limits are always bounded, the connection caps only when set.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	for _, p := range []struct {
		v   *int
		def int
	}{
		{&c.BodyLimit, d.BodyLimit}, {&c.MaxHeaderBytes, d.MaxHeaderBytes}, {&c.MaxMessages, d.MaxMessages},
		{&c.MaxJSONDepth, d.MaxJSONDepth}, {&c.MaxJSONValues, d.MaxJSONValues},
	} {
		if *p.v <= 0 {
			*p.v = p.def
		}
	}
	return c
}

func (c Config) jsonLimits() jsonLimits {
	return jsonLimits{depth: c.MaxJSONDepth, values: c.MaxJSONValues, messages: c.MaxMessages}
}

// Server is the HTTP API of one node.
type Server struct {
	cfg    Config
	be     backend.Backend
	log    *zap.Logger
	app    *fiber.App
	ids    *idSource
	base   context.Context
	cancel context.CancelFunc
	fresh  *freshConns
	conns  *connLimits
	// streams counts the stream writers still running.
	streams sync.WaitGroup
	// metrics are served on /metrics.
	metrics *metrics
	// auth turns credentials into principals.
	auth *auth.Authenticator
	// failed buffers failed admin authentications for the audit log;
	// background runs its flusher.
	failed     failedAuth
	background sync.WaitGroup
	now        func() time.Time
	// closing ends when Shutdown starts: streams that never end by
	// themselves (load feeds) stop then.
	closing     context.Context
	stopClosing context.CancelFunc
}

// New builds the API over be. cl may be nil for a node outside any cluster:
// the admin and internal routes are then absent.
func New(cfg Config, be backend.Backend, cl Cluster, log *zap.Logger) *Server {
	cfg = cfg.withDefaults()
	base, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, be: be, log: log, ids: newIDSource(), base: base, cancel: cancel, fresh: newFreshConns(), metrics: newMetrics(cfg.Registry),
		auth: auth.New(cfg.AdminToken, cfg.Keys), now: time.Now}
	s.closing, s.stopClosing = context.WithCancel(base)
	s.metrics.labeler, _ = be.(labeler)
	s.app = fiber.New(fiber.Config{
		AppName:               "sovra",
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           cfg.ReadTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		DisableStartupMessage: true,
		ErrorHandler:          s.handleError,
		ReduceMemoryUsage:     false,
		// Bodies are read by readBody as they arrive, never allocated
		// from their declared length.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		ReadBufferSize:               cfg.MaxHeaderBytes,
		// The connection caps are conns' (fasthttp's would neither see
		// IPv6 clients nor keep conns unwrapped).
		Concurrency: max(fiber.DefaultConcurrency, 2*cfg.MaxConns),
	})
	s.conns = newConnLimits(cfg.MaxConns, cfg.MaxConnsPerIP)
	s.app.Server().ConnState = func(c net.Conn, st fasthttp.ConnState) {
		s.fresh.track(c, st)
		s.conns.track(c, st)
	}
	s.routes()
	s.forwardRoutes()
	if cl != nil {
		s.adminRoutes(cl)
	}
	return s
}

// routes mounts the public routes: health, metrics and / without
// credentials, inference behind the management token or an API key
// (Anthropic clients may send theirs as x-api-key).
func (s *Server) routes() {
	a := s.app
	// A body is read only once its sender is known (readBody comes after
	// each group's authentication): an unauthenticated client makes the
	// node buffer nothing.
	a.Use(s.observe, s.recoverPanic, checkFraming, s.browserGuard())
	a.Get("/healthz", s.healthz)
	a.Get("/readyz", s.readyz)
	a.Get("/metrics", s.metrics.handler())

	a.Use("/v1/messages", s.auth.Require(auth.RoleUser, s.inferenceAuth(auth.WithKeyHeader(auth.HeaderAPIKey))...))
	v1 := a.Group("/v1", s.auth.Require(auth.RoleUser, s.inferenceAuth()...), s.readBody)
	v1.Post("/chat/completions", s.chatCompletions)
	v1.Post("/completions", s.completions)
	v1.Post("/embeddings", s.embeddings)
	v1.Get("/models", s.listModels)
	v1.Get("/models/*", s.getModel)
	v1.Post("/messages", s.messages)
	v1.Post("/responses", s.responses)
	v1.Get("/responses/*", s.storedResponse)
	v1.Delete("/responses/*", s.storedResponse)

	o := a.Group("/api", s.auth.Require(auth.RoleUser, s.inferenceAuth()...), s.readBody)
	o.Post("/chat", s.ollamaChat)
	o.Post("/generate", s.ollamaGenerate)
	o.Post("/embed", s.ollamaEmbed)
	o.Get("/tags", s.ollamaTags)
	o.Get("/ps", s.ollamaPS)
	o.Post("/show", s.ollamaShow)
	o.Get("/version", s.ollamaVersion)
	a.Get("/", func(c *fiber.Ctx) error { return c.SendString("sovra is running") })
}

// App exposes the Fiber app (for tests that use app.Test, and to mount
// the dashboard).
func (s *Server) App() *fiber.App { return s.app }

// inProcessKey marks a request made inside the node (InProcess).
type inProcessKey struct{}

// InProcess serves requests made inside the node, such as the dashboard's
// admin calls on behalf of its signed-in operator: the whole app, with its
// authentication, but logged at debug level, since the request that made
// them is logged itself.
func (s *Server) InProcess() fasthttp.RequestHandler {
	h := s.app.Handler()
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetUserValue(inProcessKey{}, true)
		h(ctx)
	}
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.app.Listener(s.conns.listener(ln))
}

// Shutdown stops accepting connections and waits for in-flight requests and
// streams to finish until ctx ends; then it cancels what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopClosing()
	done := make(chan error, 1)
	go func() { done <- s.app.ShutdownWithContext(ctx) }()
	err := s.drain(done)
	s.cancel()
	s.background.Wait()
	// Streams whose client is gone may still be ending on fasthttp's
	// writer goroutines; they stop now that s.base is cancelled.
	s.streams.Wait()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errors.New("grace period over: in-flight requests were cancelled")
	}
	return err
}

// drain closes connections that never carried a request until the
// shutdown in progress ends, and returns its result.
func (s *Server) drain(done <-chan error) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		s.fresh.closeAll()
		select {
		case err := <-done:
			return err
		case <-t.C:
		}
	}
}

// handleError renders any error a handler returned.
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	ae := toAPIError(err)
	if ae.Status >= 500 && ae.Code == "internal_error" {
		s.log.Error("unexpected error", zap.String("path", c.Path()), zap.Error(err))
	}
	if ae.Code == "unknown_url" {
		// Fiber's message repeats the whole path.
		cp := *ae
		cp.Message = "Unknown request URL: " + cut(c.Method()) + " " + cut(c.Path()) + ". Please check the URL for typos."
		ae = &cp
	}
	ri := requestInfo(c)
	if ri.model != "" && isModelNotFound(err) {
		ae = modelNotFound(ri.model)
		if s.cfg.Ready != nil {
			if rerr := s.cfg.Ready(); rerr != nil {
				// A node that has not caught up may not know the
				// deployment yet: not a definite "no such model".
				ae = notReady(rerr)
				c.Set(fiber.HeaderRetryAfter, "1")
			}
		}
	}
	if ri.forwarded {
		if errors.Is(err, backend.ErrUnavailable) {
			// Tell the forwarding node that this replica's Ollama is
			// down, not busy: 503 reads as busy, 502 as a failing replica.
			cp := *ae
			cp.Status = http.StatusBadGateway
			ae = &cp
		}
		if ae.Code != "" {
			c.Set(HeaderErrorCode, ae.Code)
		}
	} else {
		ae = peerRefusal(ae, ri.decision)
	}
	return writeError(c, ae)
}

func (s *Server) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok", "version": s.cfg.Version})
}

func (s *Server) readyz(c *fiber.Ctx) error {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unready", "reason": err.Error()})
		}
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := s.be.Heartbeat(ctx); err != nil {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unready", "reason": err.Error()})
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

// inferenceAuth are the options of the inference routes' authentication:
// with OpenInference, a request without a credential is admitted.
func (s *Server) inferenceAuth(opts ...auth.Option) []auth.Option {
	if s.cfg.OpenInference {
		opts = append(opts, auth.AllowAnonymous())
	}
	return opts
}
