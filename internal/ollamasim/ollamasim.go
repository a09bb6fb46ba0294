// Package ollamasim is a simulated Ollama server for tests, benchmarks and
// `sovra dev` when no real Ollama answers.
//
// It speaks Ollama's HTTP API with Ollama's own wire types
// (github.com/ollama/ollama/api): /api/chat, /api/generate, /api/embed,
// /api/embeddings, /api/tags, /api/ps, /api/show, /api/pull, /api/delete,
// /api/version and "/". Answers are deterministic: the text is a function
// of the model, the prompt (messages) and the "seed" option. Timing (time
// to first token, tokens per second, load time), concurrency (parallel
// slots and a bounded queue answering 503 like OLLAMA_MAX_QUEUE) and model
// sizes are configurable per server and per model.
//
// Tool calls: when a chat request carries tools and its last message has
// role "user" and mentions a tool's name (case-insensitively, also with "_"
// and "-" read as spaces, so "get weather" names get_weather), the model
// answers with a call of every tool so mentioned, in the request's order,
// with each schema property filled with a deterministic value of its type,
// instead of text. Streamed, the calls come in one chunk just before the
// final one. After a tool result the model answers with text.
//
// Reasoning: models flagged Thinking, or whose name contains "deepseek-r1"
// or "qwen3", send message.thinking (response "thinking" for generate)
// before the content unless think is false; "low" halves and "high"
// doubles the reasoning. Other models answer 400 to think=true, like Ollama.
//
// Faults (refused connections, 500s, dropped or stalled streams) can be
// switched at run time with the Set* methods or POST /_sim/faults, and
// every request is counted and logged (Stats, WaitFor, Requests,
// GET /_sim/stats) so tests can assert what the backend saw, including
// client cancellations.
package ollamasim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

// Server is a simulated Ollama server. It is an http.Handler; Start runs
// it on a listener of its own.
type Server struct {
	cfg        Config
	log        *slog.Logger
	mux        *http.ServeMux
	control    *http.ServeMux
	maxRecords int

	mu      sync.Mutex // guards the fields below and every model's state
	models  map[string]*model
	cnt     counters
	nextID  uint64
	records []RequestRecord
	changed chan struct{}

	fmu    sync.Mutex
	faults Faults

	lmu     sync.Mutex // guards the listener state below
	hs      *http.Server
	ln      net.Listener
	addr    string
	conns   map[net.Conn]struct{}
	closing chan struct{}
	closed  bool
}

// New builds a server from cfg (see Config for the defaults of zero
// fields). It does not listen: use Start, StartLocal or StartTest, or
// mount it as an http.Handler.
func New(cfg Config) *Server {
	cfg.Version = cmp.Or(cfg.Version, DefaultVersion)
	cfg.KeepAlive = cmp.Or(cfg.KeepAlive, DefaultKeepAlive)
	if cfg.KeepAlive < 0 {
		cfg.KeepAlive = math.MaxInt64 // like OLLAMA_KEEP_ALIVE=-1: forever
	}
	if cfg.Models == nil {
		cfg.Models = DefaultModels()
	}
	if cfg.Registry == nil {
		cfg.Registry = DefaultRegistry()
	}
	s := &Server{
		cfg:        cfg,
		log:        cmp.Or(cfg.Logger, slog.Default()),
		maxRecords: cmp.Or(cfg.MaxRecords, DefaultMaxRecords),
		models:     make(map[string]*model),
		changed:    make(chan struct{}),
		faults:     cfg.Faults,
		conns:      make(map[net.Conn]struct{}),
		closing:    make(chan struct{}),
	}
	s.addModels()
	s.routes()
	return s
}

// addModels registers the registry, then the local models (which win).
func (s *Server) addModels() {
	now := time.Now()
	for _, mc := range s.cfg.Registry {
		mc, p := resolve(&s.cfg, mc)
		s.models[nameKey(mc.Name)] = newModel(mc, p)
	}
	for i, mc := range s.cfg.Models {
		mc, p := resolve(&s.cfg, mc)
		m := newModel(mc, p)
		m.present = true
		// Keep the configured order in /api/tags (newest first).
		m.modifiedAt = now.Add(-time.Duration(i) * time.Minute)
		if mc.Loaded {
			m.loaded = true
			m.expiresAt = now.Add(s.cfg.KeepAlive)
			m.loads = 1
		}
		s.models[nameKey(mc.Name)] = m
	}
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	endpoints := map[string]handler{
		"POST /api/chat":       s.handleChat,
		"POST /api/generate":   s.handleGenerate,
		"POST /api/embed":      s.handleEmbed,
		"POST /api/embeddings": s.handleEmbeddings,
		"POST /api/pull":       s.handlePull,
		"POST /api/show":       s.handleShow,
		"DELETE /api/delete":   s.handleDelete,
		"GET /api/tags":        s.handleTags,
		"GET /api/ps":          s.handlePs,
		"GET /api/version":     s.handleVersion,
		"GET /{$}":             s.handleRoot,
	}
	for pattern, h := range endpoints {
		_, path, _ := strings.Cut(pattern, " ")
		s.mux.Handle(pattern, s.tracked(strings.TrimSuffix(path, "{$}"), h))
	}
	s.control = http.NewServeMux()
	s.controlRoutes(s.control)
}

// ServeHTTP serves the Ollama API and the /_sim/ control endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.control.ServeHTTP(w, r)
		return
	}
	f := s.Faults()
	if f.Refuse {
		s.refuseRequest(w)
		return
	}
	if f.BadMeta && (r.URL.Path == "/api/ps" || r.URL.Path == "/api/tags" || r.URL.Path == "/api/show") {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{\"models\": [ this is not json"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// ControlHandler serves only the /_sim/ endpoints, for a control listener
// that stays reachable while the API refuses connections.
func (s *Server) ControlHandler() http.Handler { return s.control }

func (s *Server) handleRoot(w http.ResponseWriter, _ *http.Request, _ *track) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("Ollama is running"))
}

func (s *Server) handleVersion(w http.ResponseWriter, _ *http.Request, _ *track) {
	writeJSON(w, http.StatusOK, map[string]string{"version": s.cfg.Version})
}

// Start listens on addr ("" means 127.0.0.1:0) and serves in the
// background. It returns the base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) Start(addr string) (string, error) {
	ln, err := net.Listen("tcp", cmp.Or(addr, "127.0.0.1:0"))
	if err != nil {
		return "", err
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.hs != nil || s.closed {
		_ = ln.Close()
		return "", errors.New("ollamasim: server already started or closed")
	}
	s.hs = &http.Server{Handler: s, ConnState: s.connState, ReadHeaderTimeout: 10 * time.Second}
	s.addr = ln.Addr().String()
	if s.Faults().Refuse {
		_ = ln.Close()
	} else {
		s.ln = ln
		go s.serveOn(ln)
	}
	return "http://" + s.addr, nil
}

// StartLocal listens on a free loopback port; it returns the base URL.
func (s *Server) StartLocal() (string, error) { return s.Start("127.0.0.1:0") }

func (s *Server) serveOn(ln net.Listener) {
	err := s.hs.Serve(ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.log.Warn("ollamasim: serve", "addr", ln.Addr(), "err", err)
	}
}

// Addr is the listening address ("" before Start).
func (s *Server) Addr() string {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.addr
}

// URL is the base URL ("" before Start).
func (s *Server) URL() string {
	if a := s.Addr(); a != "" {
		return "http://" + a
	}
	return ""
}

// Client is an Ollama API client for this server (after Start).
func (s *Server) Client() *api.Client {
	u, err := url.Parse(s.URL())
	if err != nil {
		panic(fmt.Sprintf("ollamasim: bad URL %q: %v", s.URL(), err))
	}
	return api.NewClient(u, http.DefaultClient)
}

func (s *Server) isClosed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// beginClose marks the server closed and releases stalled requests.
func (s *Server) beginClose() *http.Server {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.ln = nil
	return s.hs
}

// Close stops the server at once, closing its listener and connections.
func (s *Server) Close() error {
	if hs := s.beginClose(); hs != nil {
		return hs.Close()
	}
	return nil
}

// Shutdown stops accepting and waits for requests in flight (stalled ones
// are released) until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	hs := s.beginClose()
	if hs == nil {
		return nil
	}
	err := hs.Shutdown(ctx)
	if err != nil {
		_ = hs.Close()
	}
	return err
}

// StartTest starts a server on a loopback port for the duration of a test
// and closes it in t.Cleanup.
func StartTest(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := New(cfg)
	if _, err := s.StartLocal(); err != nil {
		t.Fatalf("ollamasim: start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
