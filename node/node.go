// Package node is one sovra node's runtime: it wires the configuration, the
// logger, the backend adapter and the HTTP API, and owns their start and
// graceful stop.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/internal/version"
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/backend/ollama"
)

// Config is what a node needs to run.
type Config struct {
	NodeID    string
	DataDir   string
	HTTPAddr  string
	OllamaURL string
	// MaxBodyBytes is the largest request body accepted.
	MaxBodyBytes int
	// ShutdownGrace is how long in-flight requests may run after a stop
	// signal before they are cancelled.
	ShutdownGrace time.Duration
	ReadTimeout   time.Duration
	WriteTimeout  time.Duration
	IdleTimeout   time.Duration
}

// DefaultConfig returns the defaults of every setting.
func DefaultConfig() Config {
	hc := api.DefaultConfig()
	return Config{
		HTTPAddr:      "127.0.0.1:8080",
		OllamaURL:     "http://127.0.0.1:11434",
		DataDir:       "./sovra-data",
		MaxBodyBytes:  hc.BodyLimit,
		ShutdownGrace: 30 * time.Second,
		ReadTimeout:   hc.ReadTimeout,
		WriteTimeout:  hc.WriteTimeout,
		IdleTimeout:   hc.IdleTimeout,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("node id is empty: set --node-id")
	case c.HTTPAddr == "":
		return errors.New("http address is empty: set --http-addr")
	case c.MaxBodyBytes < 1024:
		return fmt.Errorf("max body size %d is too small (at least 1024 bytes)", c.MaxBodyBytes)
	case c.ShutdownGrace < 0:
		return errors.New("shutdown grace must not be negative")
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("http address %q: %w", c.HTTPAddr, err)
	}
	return nil
}

// Node is a running sovra node.
type Node struct {
	cfg  Config
	log  *zap.Logger
	be   backend.Backend
	api  *api.Server
	ln   net.Listener
	done chan error
}

// New builds a node over the Ollama at cfg.OllamaURL.
func New(cfg Config, log *zap.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	be, err := ollama.New(cfg.OllamaURL, &http.Client{Transport: ollama.NewTransport()})
	if err != nil {
		return nil, err
	}
	return NewWithBackend(cfg, be, log), nil
}

// NewWithBackend builds a node over any backend (tests use this seam).
func NewWithBackend(cfg Config, be backend.Backend, log *zap.Logger) *Node {
	log = log.With(zap.String("node", cfg.NodeID))
	hc := api.Config{
		BodyLimit:    cfg.MaxBodyBytes,
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
		IdleTimeout:  cfg.IdleTimeout,
		Version:      version.Version,
	}
	return &Node{cfg: cfg, log: log, be: be, api: api.New(hc, be, log.Named("http")), done: make(chan error, 1)}
}

// Start listens on the HTTP address and serves in the background.
func (n *Node) Start() error {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.cfg.HTTPAddr, err)
	}
	n.ln = ln
	go func() { n.done <- n.api.Serve(ln) }()
	n.log.Info("serving", zap.String("http_addr", ln.Addr().String()), zap.String("ollama", n.cfg.OllamaURL), zap.String("version", version.Version))
	return nil
}

// Addr is the address the API listens on (useful with port 0).
func (n *Node) Addr() string { return n.ln.Addr().String() }

// URL is the base URL of the API.
func (n *Node) URL() string { return "http://" + n.Addr() }

// Stop stops accepting requests and waits up to the shutdown grace for
// in-flight ones; then it cancels what is left.
func (n *Node) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ShutdownGrace)
	defer cancel()
	n.log.Info("shutting down", zap.Duration("grace", n.cfg.ShutdownGrace))
	err := n.api.Shutdown(ctx)
	if serr := <-n.done; serr != nil && err == nil {
		err = serr
	}
	return err
}

// Run starts the node and stops it when ctx ends.
func (n *Node) Run(ctx context.Context) error {
	if err := n.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-n.done:
		return err
	}
	return n.Stop(context.Background())
}
